package auth

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/farmgate/farmgate/internal/testkit/logtest"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

func redisLimiter(t testing.TB, rdb redis.UniversalClient, prefix, id string, lease time.Duration) *RedisLimiter {
	t.Helper()
	l, err := NewRedisLimiter(rdb, LimiterConfig{Prefix: prefix, GatewayID: id, LeaseTTL: lease, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestTunnelsSharedAcrossGateways caps a customer's tunnels across two
// gateways that do not Run: no reservations, each release reaches Redis at
// once.
func TestTunnelsSharedAcrossGateways(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	a := redisLimiter(t, rdb, prefix, "gw-a", 0)
	b := redisLimiter(t, rdb, prefix, "gw-b", 0)
	c := &Customer{User: "alice", MaxConns: 3}
	var releases []func()
	for i, l := range []*RedisLimiter{a, a, b} {
		rel, _, err := l.Admit(ctx, c)
		if err != nil {
			t.Fatalf("tunnel %d: %v", i+1, err)
		}
		releases = append(releases, rel)
	}
	for name, l := range map[string]*RedisLimiter{"a": a, "b": b} {
		if _, _, err := l.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
			t.Fatalf("4th tunnel on %s = %v, want ErrTooManyConnections", name, err)
		}
	}
	releases[0]()
	releases[0]()                  // twice does nothing
	rel, _, err := b.Admit(ctx, c) // the other gateway sees a's release at once
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, _, err := a.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("double release freed two slots: %v", err)
	}
	rel()
	// No cap: no Redis call, always admitted.
	if _, _, err := a.Admit(ctx, &Customer{User: "free"}); err != nil {
		t.Fatal(err)
	}
}

func TestCrashedGatewayLeaseHeals(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	crashed := redisLimiter(t, rdb, prefix, "gw-crashed", 500*time.Millisecond)
	alive := redisLimiter(t, rdb, prefix, "gw-alive", 500*time.Millisecond)
	runLimiter(t, alive)
	c := &Customer{User: "alice", MaxConns: 2}
	for range 2 {
		if _, _, err := crashed.Admit(ctx, c); err != nil { // never released, no Run: it crashed
			t.Fatal(err)
		}
	}
	if _, _, err := alive.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("while the crashed gateway's lease holds: %v", err)
	}
	start := time.Now()
	eventually(t, 5*time.Second, "the crashed gateway's tunnels still count", func() bool {
		_, _, err := alive.Admit(ctx, c)
		return err == nil
	})
	t.Logf("healed after %v (lease 500ms)", time.Since(start))
	// The live gateway's own lease is refreshed by Run: its tunnel keeps counting.
	time.Sleep(1200 * time.Millisecond)
	other := redisLimiter(t, rdb, prefix, "gw-other", 500*time.Millisecond)
	rel, _, err := other.Admit(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("the live gateway's refreshed lease expired: %v", err)
	}
	rel()
}

func TestRequestRateSharedAcrossGateways(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	a := redisLimiter(t, rdb, prefix, "gw-a", 0)
	b := redisLimiter(t, rdb, prefix, "gw-b", 0)
	c := &Customer{User: "alice", RatePerSec: 0.5, RateBurst: 3}
	for i, l := range []*RedisLimiter{a, b, a} {
		rel, _, err := l.Admit(ctx, c)
		if err != nil {
			t.Fatalf("request %d within the burst: %v", i+1, err)
		}
		rel()
	}
	_, retry, err := b.Admit(ctx, c)
	if !errors.Is(err, ErrRateLimited) || retry <= 0 || retry > 2*time.Second {
		t.Fatalf("4th request = %v, %v; want ErrRateLimited with 0 < retry <= 2s", retry, err)
	}
	if _, _, err := a.Admit(ctx, &Customer{User: "free"}); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryLimiter(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewMemoryLimiter(clock.Now)
	ctx := t.Context()
	capped := &Customer{User: "alice", MaxConns: 1}
	rel, _, err := l.Admit(ctx, capped)
	if err != nil {
		t.Fatal(err)
	}
	if _, wait, err := l.Admit(ctx, capped); !errors.Is(err, ErrTooManyConnections) || wait != 0 {
		t.Fatalf("2nd tunnel = %v, %v; want ErrTooManyConnections", wait, err)
	}
	rel()
	rel()
	if l.open("alice") != 0 {
		t.Fatalf("open after release = %d", l.open("alice"))
	}
	rated := &Customer{User: "bob", RatePerSec: 2, RateBurst: 2}
	for range 2 {
		rel, _, err := l.Admit(ctx, rated)
		if err != nil {
			t.Fatal(err)
		}
		rel()
	}
	_, retry, err := l.Admit(ctx, rated)
	if !errors.Is(err, ErrRateLimited) || retry != 500*time.Millisecond {
		t.Fatalf("3rd request = %v, %v; want 500ms", retry, err)
	}
	clock.Advance(retry)
	if _, _, err := l.Admit(ctx, rated); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
}

// runLimiter runs l.Run until the test ends; the returned func stops it
// early and waits for its final flush.
func runLimiter(t testing.TB, l *RedisLimiter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}

func TestAdmitSharedAcrossGateways(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	a := redisLimiter(t, rdb, prefix, "gw-a", 0)
	b := redisLimiter(t, rdb, prefix, "gw-b", 0)
	runLimiter(t, a)
	runLimiter(t, b)
	c := &Customer{User: "alice", MaxConns: 3, RatePerSec: 1000}
	var releases []func()
	for i, l := range []*RedisLimiter{a, a, b} {
		rel, _, err := l.Admit(ctx, c)
		if err != nil {
			t.Fatalf("tunnel %d: %v", i+1, err)
		}
		releases = append(releases, rel)
	}
	for name, l := range map[string]*RedisLimiter{"a": a, "b": b} {
		if _, _, err := l.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
			t.Fatalf("4th tunnel on %s = %v, want ErrTooManyConnections", name, err)
		}
	}
	releases[0]()
	releases[0]()                  // twice does nothing
	rel, _, err := a.Admit(ctx, c) // the gateway that released reuses the slot at once
	if err != nil {
		t.Fatalf("after a release, same gateway: %v", err)
	}
	if _, _, err := b.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("double release freed two slots: %v", err)
	}
	rel()
	start := time.Now()
	eventually(t, 2*time.Second, "the other gateway never saw the release", func() bool {
		rel, _, err := b.Admit(ctx, c)
		if err == nil {
			releases[2], rel = rel, releases[2]
			rel()
		}
		return err == nil
	})
	t.Logf("release seen by the other gateway after %v (flush every 100ms)", time.Since(start))
	// No limits: no Redis call, always admitted.
	if _, _, err := a.Admit(ctx, &Customer{User: "free"}); err != nil {
		t.Fatal(err)
	}
}

// TestAdmitNeverOverCap hammers one customer from two gateways that reserve
// ahead: at no moment are more than MaxConns tunnels open, and the rate
// admits no more than the GCRA allows.
func TestAdmitNeverOverCap(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	lims := []*RedisLimiter{redisLimiter(t, rdb, prefix, "gw-a", 0), redisLimiter(t, rdb, prefix, "gw-b", 0)}
	for _, l := range lims {
		runLimiter(t, l)
	}
	for _, tc := range []struct {
		name string
		c    *Customer
	}{
		{"cap", &Customer{User: "capped", MaxConns: 6}},
		{"rate", &Customer{User: "rated", RatePerSec: 200, RateBurst: 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var open, peak, admitted atomic.Int64
			start := time.Now()
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := lims[w%2]
					for time.Since(start) < 700*time.Millisecond {
						rel, _, err := l.Admit(ctx, tc.c)
						if err != nil {
							time.Sleep(time.Millisecond)
							continue
						}
						admitted.Add(1)
						n := open.Add(1)
						for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
						}
						time.Sleep(time.Duration(w%3+1) * time.Millisecond)
						open.Add(-1)
						rel()
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			t.Logf("admitted %d in %v, peak %d open", admitted.Load(), elapsed, peak.Load())
			if tc.c.MaxConns > 0 && (peak.Load() > int64(tc.c.MaxConns) || peak.Load() < int64(tc.c.MaxConns)/2) {
				t.Errorf("peak %d tunnels open, want up to MaxConns %d", peak.Load(), tc.c.MaxConns)
			}
			if tc.c.RatePerSec > 0 {
				allowed := int64(float64(tc.c.burst())+tc.c.RatePerSec*elapsed.Seconds()) + 1
				if admitted.Load() > allowed {
					t.Errorf("admitted %d requests, the GCRA allows %d", admitted.Load(), allowed)
				}
				if admitted.Load() < allowed/2 {
					t.Errorf("admitted %d requests, want about %d: reservations starve the customer", admitted.Load(), allowed)
				}
			}
		})
	}
}

// TestAdmitReleasesLoseNothing opens and closes many tunnels on a gateway
// that batches its releases; once it stops, another gateway can open
// MaxConns tunnels: every release and unused reservation reached Redis.
func TestAdmitReleasesLoseNothing(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	a := redisLimiter(t, rdb, prefix, "gw-a", 0)
	stop := runLimiter(t, a)
	c := &Customer{User: "alice", MaxConns: 50, RatePerSec: 1e5}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				rel, _, err := a.Admit(ctx, c)
				if err != nil {
					t.Error(err)
					return
				}
				rel()
			}
		}()
	}
	wg.Wait()
	stop() // flushes what is left
	if n := a.Open("alice"); n != 0 {
		t.Errorf("gateway a counts %d open tunnels, want 0", n)
	}
	if n, err := rdb.HLen(ctx, prefix+"conns:{alice}").Result(); err != nil || n != 0 {
		t.Errorf("gateway fields left in Redis: %d, %v", n, err)
	}
	b := redisLimiter(t, rdb, prefix, "gw-b", 0)
	for i := range c.MaxConns {
		if _, _, err := b.Admit(ctx, c); err != nil {
			t.Fatalf("tunnel %d on the other gateway: %v", i+1, err)
		}
	}
	if _, _, err := b.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("tunnel past MaxConns: %v", err)
	}
}

func TestAdmitFailsStatic(t *testing.T) {
	t.Parallel()
	proc := redistest.Start(t)
	logs := &logtest.Recorder{}
	l, err := NewRedisLimiter(proc.Client(), LimiterConfig{GatewayID: "gw", Timeout: 200 * time.Millisecond, Logger: slogOf(logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c := &Customer{User: "alice", MaxConns: 2, RatePerSec: 1, RateBurst: 3}
	rel, _, err := l.Admit(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	proc.Stop()
	rel2, _, err := l.Admit(ctx, c)
	if err != nil {
		t.Fatalf("during the outage, within MaxConns: %v", err)
	}
	if _, _, err := l.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("during the outage, past MaxConns: %v", err)
	}
	rel()
	// The rate holds per gateway: a burst of 3 then refusals with a wait.
	free := &Customer{User: "bob", RatePerSec: 1, RateBurst: 3}
	for i := range 3 {
		if _, _, err := l.Admit(ctx, free); err != nil {
			t.Fatalf("request %d during the outage: %v", i+1, err)
		}
	}
	if _, wait, err := l.Admit(ctx, free); !errors.Is(err, ErrRateLimited) || wait <= 0 {
		t.Fatalf("request past the burst during the outage = %v, %v; want ErrRateLimited with a wait", wait, err)
	}
	if n := logs.Count("redis unreachable; serving from memory"); n != 1 {
		t.Errorf("outage logged %d times, want 1", n)
	}
	proc.Restart()
	l.refresh(ctx) // re-asserts this gateway's count (1) in the new Redis
	other := redisLimiter(t, proc.Client(), DefaultPrefix, "gw2", 0)
	rel3, _, err := other.Admit(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := other.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("after recovery the outage tunnel is not counted: %v", err)
	}
	rel2()
	rel3()
}

func TestMemoryLimiterAdmit(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewMemoryLimiter(clock.Now)
	ctx := t.Context()
	c := &Customer{User: "alice", MaxConns: 1, RatePerSec: 1, RateBurst: 2}
	rel, _, err := l.Admit(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, wait, err := l.Admit(ctx, c); !errors.Is(err, ErrTooManyConnections) || wait != 0 {
		t.Fatalf("2nd tunnel = %v, %v; want ErrTooManyConnections", wait, err)
	}
	rel()
	if _, wait, err := l.Admit(ctx, c); !errors.Is(err, ErrRateLimited) || wait != time.Second {
		t.Fatalf("3rd request = %v, %v; want ErrRateLimited after 1s (the refused 2nd one counted)", wait, err)
	}
	clock.Advance(time.Second)
	if _, _, err := l.Admit(ctx, c); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
}
