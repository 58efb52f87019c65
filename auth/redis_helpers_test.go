package auth

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// sharedRedis is the Redis the tests share.
const sharedRedis = "127.0.0.1:6379"

// needRedis returns a client of the shared Redis and a key prefix of this
// test's own, deleted at cleanup. Without Redis it skips, or fails when
// CI=true.
func needRedis(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: sharedRedis, DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis at %s unreachable (CI=true, so this fails): %v", sharedRedis, err)
		}
		t.Skipf("redis at %s unreachable (start redis-server to run this test): %v", sharedRedis, err)
	}
	prefix := fmt.Sprintf("fg-test-%08x:", rand.Uint32())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	return rdb, prefix
}

// redisProc is a redis-server of a test's own, for outages.
type redisProc struct {
	t    testing.TB
	port int
	mu   sync.Mutex // guards cmd
	cmd  *exec.Cmd
}

// startRedisProc starts a redis-server on a free port; it is stopped at
// cleanup. Without redis-server it skips, or fails when CI=true.
func startRedisProc(t testing.TB) *redisProc {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found (CI=true, so this fails): %v", err)
		}
		t.Skipf("redis-server not found: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	p := &redisProc{t: t, port: port}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *redisProc) addr() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

func (p *redisProc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(p.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.cmd = cmd
	rdb := redis.NewClient(&redis.Options{Addr: p.addr()})
	defer rdb.Close()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if i > 100 {
			p.t.Fatalf("redis-server on %d did not start: %v\n%s", p.port, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *redisProc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}

// client returns a client of p that gives up quickly, closed at cleanup.
func (p *redisProc) client() redis.UniversalClient {
	rdb := redis.NewClient(&redis.Options{Addr: p.addr(), DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1})
	p.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// logCounter is a slog handler that keeps the messages it saw.
type logCounter struct {
	mu   sync.Mutex // guards msgs
	msgs []string
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

func (l *logCounter) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// quietRedisLog drops go-redis's own log lines (dial failures during the
// outage tests); the tests assert on the store's log lines instead.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedisLog{}) }

func slogOf(h slog.Handler) *slog.Logger { return slog.New(h) }

func (p *redisProc) signal(sig os.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.cmd.Process.Signal(sig)
	}
}
