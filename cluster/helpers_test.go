package cluster_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cluster"
	"github.com/farmgate/farmgate/pool"
)

// key returns a 32-byte AES key filled with b.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// testLogger discards logs unless CLUSTER_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("CLUSTER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func exitMeta(i int) cluster.Meta {
	return cluster.Meta{
		Role: cluster.RoleExit, ID: fmt.Sprintf("exit-%d", i), DC: "eu", Pool: "resi",
		Country: "DE", City: fmt.Sprintf("city%d", i), Weight: 1, Capacity: 10 + i,
		ProxyAddr: fmt.Sprintf("127.0.0.1:%d", 20000+i), Version: "test",
	}
}

func exitEgress(i int) []netip.Addr {
	return []netip.Addr{
		netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}),
		netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}),
	}
}

func gatewayMeta(name string) cluster.Meta {
	return cluster.Meta{Role: cluster.RoleGateway, ID: name, DC: "eu", Version: "test"}
}

// startNode starts a cluster node with the local profile and key 1; opts
// adjust its config. The node is shut down when the test ends.
func startNode(t testing.TB, meta cluster.Meta, sink cluster.Sink, opts ...func(*cluster.Config)) *cluster.Cluster {
	t.Helper()
	cfg := cluster.LocalConfig()
	cfg.Keys = [][]byte{key(1)}
	cfg.Meta = meta
	cfg.Logger = testLogger()
	// A metadata broadcast goes out in a few gossip rounds; on a busy
	// machine it can take longer than the 5s default, and UpdateMeta would
	// fail a test whose change is applied and spreading.
	cfg.UpdateTimeout = settle
	for _, o := range opts {
		o(&cfg)
	}
	c, err := cluster.New(cfg, sink)
	if err != nil {
		t.Fatalf("starting node %s: %v", meta.ID, err)
	}
	t.Cleanup(func() { _ = c.Shutdown() })
	return c
}

func joining(seeds ...string) func(*cluster.Config) {
	return func(c *cluster.Config) { c.Join = seeds }
}

func withEgress(addrs []netip.Addr) func(*cluster.Config) {
	return func(c *cluster.Config) { c.Egress = addrs }
}

func newPool(t testing.TB) *pool.Pool {
	t.Helper()
	p, err := pool.New(pool.DefaultConfig(), testLogger())
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	return p
}

// farm is one gateway with a real pool and n exits.
type farm struct {
	gw    *cluster.Cluster
	pool  *pool.Pool
	exits []*cluster.Cluster
}

func startFarm(t *testing.T, n int) *farm {
	t.Helper()
	f := &farm{pool: newPool(t)}
	f.gw = startNode(t, gatewayMeta("gw-1"), f.pool)
	for i := range n {
		f.exits = append(f.exits, startNode(t, exitMeta(i), nil, joining(f.gw.Addr()), withEgress(exitEgress(i))))
	}
	waitFor(t, settle, "every exit in the pool", func() bool { return len(f.pool.Exits()) == n })
	return f
}

// status returns the pool's view of exit id.
func status(p *pool.Pool, id string) (pool.ExitStatus, bool) {
	for _, s := range p.Exits() {
		if s.ID == id {
			return s, true
		}
	}
	return pool.ExitStatus{}, false
}

// settle bounds the waits for gossip to converge: generous, for a busy
// machine under -race, where the local profile's 100 ms probe timeout can
// declare live nodes dead until they refute. Tests that have a target log
// the time they measured, or assert the target separately.
const settle = 20 * time.Second

// waitFor polls cond every 10 ms until it holds or timeout passes, and
// returns how long it took.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for deadline := start.Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return time.Since(start)
		}
	}
	t.Fatalf("waiting for %s: not after %v", what, timeout)
	return 0
}
