package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func redisLimiter(t testing.TB, rdb redis.UniversalClient, prefix, id string, lease time.Duration) *RedisLimiter {
	t.Helper()
	l, err := NewRedisLimiter(rdb, LimiterConfig{Prefix: prefix, GatewayID: id, LeaseTTL: lease, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestTunnelsSharedAcrossGateways(t *testing.T) {
	t.Parallel()
	rdb, prefix := needRedis(t)
	ctx := t.Context()
	a := redisLimiter(t, rdb, prefix, "gw-a", 0)
	b := redisLimiter(t, rdb, prefix, "gw-b", 0)
	c := &Customer{User: "alice", MaxConns: 3}
	var releases []func()
	for i, l := range []*RedisLimiter{a, a, b} {
		rel, err := l.AcquireTunnel(ctx, c)
		if err != nil {
			t.Fatalf("tunnel %d: %v", i+1, err)
		}
		releases = append(releases, rel)
	}
	for name, l := range map[string]*RedisLimiter{"a": a, "b": b} {
		if _, err := l.AcquireTunnel(ctx, c); !errors.Is(err, ErrTooManyConnections) {
			t.Fatalf("4th tunnel on %s = %v, want ErrTooManyConnections", name, err)
		}
	}
	releases[0]()
	releases[0]() // twice does nothing
	rel, err := b.AcquireTunnel(ctx, c)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := a.AcquireTunnel(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("double release freed two slots: %v", err)
	}
	rel()
	// No cap: no Redis call, always admitted.
	if _, err := a.AcquireTunnel(ctx, &Customer{User: "free"}); err != nil {
		t.Fatal(err)
	}
}

func TestCrashedGatewayLeaseHeals(t *testing.T) {
	t.Parallel()
	rdb, prefix := needRedis(t)
	ctx := t.Context()
	crashed := redisLimiter(t, rdb, prefix, "gw-crashed", 500*time.Millisecond)
	alive := redisLimiter(t, rdb, prefix, "gw-alive", 500*time.Millisecond)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); alive.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	c := &Customer{User: "alice", MaxConns: 2}
	for range 2 {
		if _, err := crashed.AcquireTunnel(ctx, c); err != nil { // never released, no Run: it crashed
			t.Fatal(err)
		}
	}
	if _, err := alive.AcquireTunnel(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("while the crashed gateway's lease holds: %v", err)
	}
	start := time.Now()
	eventually(t, 5*time.Second, "the crashed gateway's tunnels still count", func() bool {
		_, err := alive.AcquireTunnel(ctx, c)
		return err == nil
	})
	t.Logf("healed after %v (lease 500ms)", time.Since(start))
	// The live gateway's own lease is refreshed by Run: its tunnel keeps counting.
	time.Sleep(1200 * time.Millisecond)
	other := redisLimiter(t, rdb, prefix, "gw-other", 500*time.Millisecond)
	rel, err := other.AcquireTunnel(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.AcquireTunnel(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("the live gateway's refreshed lease expired: %v", err)
	}
	rel()
}

func TestRequestRateSharedAcrossGateways(t *testing.T) {
	t.Parallel()
	rdb, prefix := needRedis(t)
	ctx := t.Context()
	a := redisLimiter(t, rdb, prefix, "gw-a", 0)
	b := redisLimiter(t, rdb, prefix, "gw-b", 0)
	c := &Customer{User: "alice", RatePerSec: 0.5, RateBurst: 3}
	for i, l := range []*RedisLimiter{a, b, a} {
		if _, err := l.AllowRequest(ctx, c); err != nil {
			t.Fatalf("request %d within the burst: %v", i+1, err)
		}
	}
	retry, err := b.AllowRequest(ctx, c)
	if !errors.Is(err, ErrRateLimited) || retry <= 0 || retry > 2*time.Second {
		t.Fatalf("4th request = %v, %v; want ErrRateLimited with 0 < retry <= 2s", retry, err)
	}
	if _, err := a.AllowRequest(ctx, &Customer{User: "free"}); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryLimiter(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	l := NewMemoryLimiter(clock.Now)
	ctx := t.Context()
	c := &Customer{User: "alice", MaxConns: 1, RatePerSec: 2, RateBurst: 2}
	rel, err := l.AcquireTunnel(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AcquireTunnel(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("2nd tunnel = %v", err)
	}
	rel()
	rel()
	if l.open("alice") != 0 {
		t.Fatalf("open after release = %d", l.open("alice"))
	}
	for range 2 {
		if _, err := l.AllowRequest(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	retry, err := l.AllowRequest(ctx, c)
	if !errors.Is(err, ErrRateLimited) || retry != 500*time.Millisecond {
		t.Fatalf("3rd request = %v, %v; want 500ms", retry, err)
	}
	clock.Advance(retry)
	if _, err := l.AllowRequest(ctx, c); err != nil {
		t.Fatalf("after Retry-After: %v", err)
	}
}

func TestLimiterFailsStatic(t *testing.T) {
	t.Parallel()
	proc := startRedisProc(t)
	logs := &logCounter{}
	l, err := NewRedisLimiter(proc.client(), LimiterConfig{GatewayID: "gw", Timeout: 200 * time.Millisecond, Logger: slogOf(logs)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c := &Customer{User: "alice", MaxConns: 2, RatePerSec: 100}
	rel, err := l.AcquireTunnel(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	proc.stop()
	rel2, err := l.AcquireTunnel(ctx, c)
	if err != nil {
		t.Fatalf("during the outage, within MaxConns: %v", err)
	}
	if _, err := l.AcquireTunnel(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("during the outage, past MaxConns: %v", err)
	}
	if _, err := l.AllowRequest(ctx, c); err != nil {
		t.Fatalf("request during the outage: %v", err)
	}
	rel()
	if n := logs.count("redis unreachable; serving from memory"); n != 1 {
		t.Errorf("outage logged %d times, want 1", n)
	}
	proc.start()
	l.refresh(ctx) // re-asserts this gateway's count (1) in the new Redis
	other := redisLimiter(t, proc.client(), DefaultPrefix, "gw2", 0)
	rel3, err := other.AcquireTunnel(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.AcquireTunnel(ctx, c); !errors.Is(err, ErrTooManyConnections) {
		t.Fatalf("after recovery the outage tunnel is not counted: %v", err)
	}
	rel2()
	rel3()
}
