package e2e

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// redisGateway is one more gateway in front of a farm's exits, with its
// customers, limits, usage and sticky sessions in Redis.
type redisGateway struct {
	addr  string
	meter *auth.RedisMeter
	store *auth.RedisStore
	gw    *gateway.Gateway
	stop  func()
}

func startRedisGateway(t testing.TB, f *demo.Farm, rdb redis.UniversalClient, prefix string) *redisGateway {
	t.Helper()
	acfg := auth.DefaultConfig()
	acfg.Prefix = prefix
	store, err := auth.NewRedisStore(rdb, acfg)
	if err != nil {
		t.Fatal(err)
	}
	lcfg := auth.DefaultLimiterConfig()
	lcfg.Prefix = prefix
	lim, err := auth.NewRedisLimiter(rdb, lcfg)
	if err != nil {
		t.Fatal(err)
	}
	mcfg := auth.DefaultMeterConfig()
	mcfg.Prefix = prefix
	meter, err := auth.NewRedisMeter(rdb, mcfg)
	if err != nil {
		t.Fatal(err)
	}
	pcfg := pool.DefaultConfig()
	pcfg.LocalDC = "eu"
	pcfg.Sessions = pool.NewRedisSessions(rdb, prefix, 0)
	p, err := pool.New(pcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.Exits {
		info, err := upstream.FetchInfo(context.Background(), e.Addr, f.Token(), f.ExitTLS(e.Spec.ID))
		if err != nil {
			t.Fatal(err)
		}
		p.Upsert(upstream.ExitFromInfo(e.Spec.ID, upstream.SchemeFarmgate+"://"+e.Addr, info))
	}
	gcfg := gateway.DefaultConfig()
	gcfg.ExitToken, gcfg.ExitTLS = f.Token(), f.ExitTLS
	gcfg.Meter, gcfg.Limiter = meter, lim
	gcfg.CheckInterval = 100 * time.Millisecond
	gw, err := gateway.New(gcfg, store, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw.FollowRevocations(store)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context) error{store.Run, lim.Run, meter.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); gw.Serve(ln) }()
	var once sync.Once
	g := &redisGateway{addr: ln.Addr().String(), meter: meter, store: store, gw: gw}
	g.stop = func() {
		once.Do(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer scancel()
			gw.Shutdown(sctx)
			meter.Close(sctx)
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(g.stop)
	return g
}

func putCustomer(t *testing.T, s *auth.RedisStore, r auth.CustomerRecord) {
	t.Helper()
	if r.Password == "" {
		r.Password = "demo"
	}
	if err := s.Put(context.Background(), r, true); err != nil {
		t.Fatal(err)
	}
}

// Two gateways share one Redis: the same sticky session lands on the same
// exit and IP through either, limits count across both, and usage adds up.
func TestTwoGatewaysShareSessionsLimitsAndUsage(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	f := startFarm(t, nil)
	g1 := startRedisGateway(t, f, rdb, prefix)
	g2 := startRedisGateway(t, f, rdb, prefix)
	putCustomer(t, g1.store, auth.CustomerRecord{User: "alice", Pools: []string{"resi", "dc"}, MaxConns: 2})
	echo := echoServer(t)
	url := "http://" + f.Origin.HTTPAddr + "/ip"

	// Sticky across gateways.
	var first string
	for i := range 6 {
		gw := []string{g1.addr, g2.addr}[i%2]
		r := curl(t, "http://alice-session-shared1:demo@"+gw, url)
		if r.status != 200 {
			t.Fatalf("session request via %s: %d %s", gw, r.status, r.all.Get("X-Farmgate-Error"))
		}
		ip := strings.TrimSpace(r.body)
		if first == "" {
			first = ip
		} else if ip != first {
			t.Fatalf("session came from %s via one gateway and %s via the other", first, ip)
		}
	}

	// max_conns 2 across both gateways.
	fa := &demo.Farm{GatewayAddr: g1.addr}
	fb := &demo.Farm{GatewayAddr: g2.addr}
	t1, _ := dialTunnelAs(t, fa, "alice", echo)
	t2, _ := dialTunnelAs(t, fb, "alice", echo)
	for _, gw := range []string{g1.addr, g2.addr} {
		r := curl(t, "http://alice:demo@"+gw, url)
		if r.status != 429 || r.all.Get("X-Farmgate-Error") != "too_many_connections" {
			t.Errorf("third connection via %s: %d %q, want 429 too_many_connections", gw, r.status, r.all.Get("X-Farmgate-Error"))
		}
	}
	t1.Close()
	t2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for curl(t, "http://alice:demo@"+g2.addr, url).status != 200 {
		if time.Now().After(deadline) {
			t.Fatal("slots not released after the tunnels closed")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Usage from both gateways adds up in Redis.
	for _, gw := range []string{g1.addr, g2.addr} {
		if r := curl(t, "http://alice:demo@"+gw, "http://"+f.Origin.HTTPAddr+"/bytes?n=100000"); r.status != 200 || len(r.body) != 100000 {
			t.Fatalf("download via %s: %d, %d bytes", gw, r.status, len(r.body))
		}
	}
	g1.stop()
	g2.stop() // flushes what each counted
	rep, err := g1.meter.Usage(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if rep.ThisMonth.Down < 200000 {
		t.Errorf("usage down this month %d, want ≥ 200000 (2 × 100000 through two gateways)", rep.ThisMonth.Down)
	}
	if rep.MonthByPool["resi"].Down < 200000 {
		t.Errorf("usage of pool resi %+v", rep.MonthByPool)
	}
}

// dialTunnelAs is dialTunnel with a password of "demo" for any user.
func dialTunnelAs(t *testing.T, f *demo.Farm, user, target string) (net.Conn, io.Reader) {
	t.Helper()
	c, br := dialTunnel(t, f, user, target, "")
	return c, br
}

// Quota: a live tunnel is cut within 5 s of crossing it, and new ones get
// 402; the request rate gets 429 with Retry-After.
func TestQuotaAndRateLimit(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	f := startFarm(t, nil)
	g := startRedisGateway(t, f, rdb, prefix)
	putCustomer(t, g.store, auth.CustomerRecord{User: "quota", Pools: []string{"resi"}, QuotaBytes: 300_000})
	putCustomer(t, g.store, auth.CustomerRecord{User: "slow", Pools: []string{"resi"}, RatePerSec: 0.2, RateBurst: 1})

	// A tunnel that streams until it is cut.
	stream := serveTCP(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 10_000)
		for i := 0; i < 10_000; i++ { // bounded: at most 100 MB
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(buf); err != nil {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	c, br := dialTunnel(t, &demo.Farm{GatewayAddr: g.addr}, "quota", stream, "")
	start := time.Now()
	var got int64
	crossed := time.Time{}
	buf := make([]byte, 32<<10)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		n, err := br.Read(buf)
		got += int64(n)
		if got >= 300_000 && crossed.IsZero() {
			crossed = time.Now()
		}
		if err != nil {
			break
		}
	}
	if crossed.IsZero() {
		t.Fatalf("tunnel ended after %d bytes, before crossing the quota", got)
	}
	if d := time.Since(crossed); d > 5*time.Second {
		t.Errorf("tunnel cut %s after crossing the quota, want ≤ 5s", d)
	}
	t.Logf("quota tunnel: %d bytes in %s, cut %s after crossing", got, time.Since(start).Round(time.Millisecond), time.Since(crossed).Round(time.Millisecond))
	r := curl(t, "http://quota:demo@"+g.addr, "http://"+f.Origin.HTTPAddr+"/ip")
	if r.status != 402 || r.all.Get("X-Farmgate-Error") != "quota_exceeded" {
		t.Errorf("over quota: %d %q, want 402 quota_exceeded", r.status, r.all.Get("X-Farmgate-Error"))
	}

	if r := curl(t, "http://slow:demo@"+g.addr, "http://"+f.Origin.HTTPAddr+"/ip"); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	r = curl(t, "http://slow:demo@"+g.addr, "http://"+f.Origin.HTTPAddr+"/ip")
	if r.status != 429 || r.all.Get("X-Farmgate-Error") != "rate_limited" || r.all.Get("Retry-After") == "" {
		t.Errorf("second request at 0.2/s: %d %q Retry-After %q, want 429 rate_limited with Retry-After", r.status, r.all.Get("X-Farmgate-Error"), r.all.Get("Retry-After"))
	}
}

// A customer disabled or deleted in Redis loses their live tunnels on every
// gateway within seconds, not only new requests; other customers keep
// theirs.
func TestRevokedCustomerLosesLiveTunnels(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	f := startFarm(t, nil)
	g1 := startRedisGateway(t, f, rdb, prefix)
	g2 := startRedisGateway(t, f, rdb, prefix)
	for _, u := range []string{"stays", "disabled", "deleted"} {
		putCustomer(t, g1.store, auth.CustomerRecord{User: u, Pools: []string{"resi"}})
	}
	echo := echoServer(t)
	type live struct {
		user string
		conn net.Conn
		r    io.Reader
	}
	var tunnels []live
	for _, g := range []*redisGateway{g1, g2} {
		for _, u := range []string{"stays", "disabled", "deleted"} {
			c, r := dialTunnelAs(t, &demo.Farm{GatewayAddr: g.addr}, u, echo)
			tunnels = append(tunnels, live{u, c, r})
		}
	}
	if err := g1.store.Put(context.Background(), auth.CustomerRecord{User: "disabled", Password: "demo", Pools: []string{"resi"}, Disabled: true}, false); err != nil {
		t.Fatal(err)
	}
	if err := g2.store.Delete(context.Background(), "deleted"); err != nil {
		t.Fatal(err)
	}
	for _, tu := range tunnels {
		_ = tu.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if tu.user == "stays" {
			continue
		}
		t0 := time.Now()
		if n, err := tu.r.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("%s: tunnel still open 5 s after the change (read %d, %v)", tu.user, n, err)
		}
		t.Logf("%s: cut after %s", tu.user, time.Since(t0))
	}
	for _, tu := range tunnels {
		if tu.user != "stays" {
			continue
		}
		if _, err := tu.conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(tu.r, buf); err != nil || string(buf) != "ping\n" {
			t.Errorf("stays: tunnel broken: %q %v", buf, err)
		}
	}
}
