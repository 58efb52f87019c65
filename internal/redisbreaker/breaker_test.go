package redisbreaker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/farmgate/farmgate/internal/testkit/logtest"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

// quietRedisLog drops go-redis's own log lines (dial failures while a
// server is stopped); the tests assert on the breaker's lines instead.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedisLog{}) }

// client returns a client of addr that honours its callers' deadlines, as
// the gateway's does.
func client(t *testing.T, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// running returns a breaker on rdb whose prober runs until the test ends.
func running(t *testing.T, rdb redis.UniversalClient, logs *logtest.Recorder) *Breaker {
	t.Helper()
	b, err := New(rdb, Config{ProbeInterval: 50 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func get(rdb redis.UniversalClient, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	err := rdb.Get(ctx, "k").Err()
	return time.Since(t0), err
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestHungRedisCostsOneTimeout(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := client(t, srv.Addr())
	logs := &logtest.Recorder{}
	b := running(t, rdb, logs)
	if err := rdb.Set(t.Context(), "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Signal(syscall.SIGSTOP)
	stopped := true
	t.Cleanup(func() {
		if stopped {
			srv.Signal(syscall.SIGCONT)
		}
	})
	if _, err := get(rdb, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first call to a hung Redis: %v, want its timeout", err)
	}
	if !b.Open() {
		t.Fatal("breaker closed after a timeout")
	}
	for i := range 10 {
		took, err := get(rdb, 300*time.Millisecond)
		if !errors.Is(err, ErrOpen) {
			t.Fatalf("call %d: %v, want ErrOpen", i+2, err)
		}
		// The target is no wait at all; 100ms leaves room for a busy machine
		// and is far below the 300ms timeout.
		if took > 100*time.Millisecond {
			t.Errorf("call %d took %v with the breaker open", i+2, took)
		}
	}
	pipe := rdb.Pipeline()
	g := pipe.Get(t.Context(), "k")
	if _, err := pipe.Exec(t.Context()); !errors.Is(err, ErrOpen) || !errors.Is(g.Err(), ErrOpen) {
		t.Fatalf("pipeline with the breaker open: %v, command %v; want ErrOpen", err, g.Err())
	}

	srv.Signal(syscall.SIGCONT)
	stopped = false
	eventually(t, 10*time.Second, "breaker closed after Redis resumed", func() bool { return !b.Open() })
	if v, err := rdb.Get(t.Context(), "k").Result(); err != nil || v != "v" {
		t.Fatalf("after Redis resumed: %q, %v", v, err)
	}
	if o, c := logs.CountPrefix("redis not answering"), logs.CountPrefix("redis breaker closed"); o != 1 || c != 1 {
		t.Errorf("logged %d openings and %d closings, want one each", o, c)
	}
}

func TestRefusedRedisOpensUntilItIsBack(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := client(t, srv.Addr())
	b := running(t, rdb, &logtest.Recorder{})
	srv.Stop()
	// The first call gets the refusal, unless the breaker's own probe met
	// it first and opened already; after it, calls fail fast.
	if _, err := get(rdb, time.Second); err == nil {
		t.Fatal("first call to a stopped Redis succeeded")
	}
	if _, err := get(rdb, time.Second); !errors.Is(err, ErrOpen) {
		t.Fatalf("second call: %v, want ErrOpen", err)
	}
	srv.Restart()
	eventually(t, 10*time.Second, "breaker closed after Redis restarted", func() bool { return !b.Open() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

// Answers of Redis's own, and callers that give up, say Redis is there.
func TestAnswersKeepTheBreakerClosed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := client(t, srv.Addr())
	b := running(t, rdb, &logtest.Recorder{})
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"missing key (redis.Nil)", func() error { return rdb.Get(t.Context(), "missing").Err() }},
		{"script error", func() error { return rdb.Eval(t.Context(), "return redis.error_reply('no')", nil).Err() }},
		{"wrong type", func() error {
			rdb.Set(t.Context(), "str", "x", 0)
			return rdb.HGet(t.Context(), "str", "f").Err()
		}},
		{"caller gave up", func() error { return rdb.Get(canceled, "k").Err() }},
		{"pipeline with redis.Nil", func() error {
			p := rdb.Pipeline()
			p.Get(t.Context(), "missing")
			_, err := p.Exec(t.Context())
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil {
				t.Fatal("want an error")
			}
			if b.Open() {
				t.Fatal("breaker opened")
			}
		})
	}
}

// Without its prober nothing would close the breaker, so it never opens.
func TestBreakerWithoutRunNeverOpens(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := client(t, srv.Addr())
	b, err := New(rdb, Config{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for range 2 {
		if _, err := get(rdb, time.Second); err == nil || errors.Is(err, ErrOpen) {
			t.Fatalf("call to a stopped Redis: %v, want its own error", err)
		}
	}
	if b.Open() {
		t.Fatal("breaker open without Run")
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{ProbeInterval: -1}, "ProbeInterval"},
		{Config{ProbeTimeout: -1}, "ProbeTimeout"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}
