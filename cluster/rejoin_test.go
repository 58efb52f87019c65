package cluster_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/farmgate/farmgate/cluster"
	"github.com/farmgate/farmgate/pool"
)

// rejoinEvery is the rejoin interval of the nodes in these tests.
const rejoinEvery = 200 * time.Millisecond

// freeGossipAddr returns a loopback address whose port is free, TCP and UDP,
// for nodes that must know each other's address before they start, or
// restart on it. The port is below Linux's ephemeral range (32768 and up):
// there, the outgoing connections of other tests (memberlist dials a stream
// for every push/pull) and nodes bound to port 0 could take it between now
// and the node's bind.
func freeGossipAddr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return addr
	}
	t.Fatal("no free port for gossip below the ephemeral range")
	return ""
}

func at(addr string) func(*cluster.Config) {
	return func(c *cluster.Config) { c.BindAddr = addr }
}

func named(name string) func(*cluster.Config) {
	return func(c *cluster.Config) { c.NodeName = name }
}

func rejoiningEvery(d time.Duration) func(*cluster.Config) {
	return func(c *cluster.Config) { c.RejoinInterval = d }
}

// logBuffer is a log destination tests read while the node writes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many lines hold every one of parts.
func (l *logBuffer) count(parts ...string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			n++
		}
	}
	return n
}

func loggingTo(l *logBuffer) func(*cluster.Config) {
	return func(c *cluster.Config) {
		c.Logger = slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
}

// fakeClock is the real time plus an offset a test moves forward.
type fakeClock struct{ offset atomic.Int64 }

func (f *fakeClock) now() time.Time          { return time.Now().Add(time.Duration(f.offset.Load())) }
func (f *fakeClock) advance(d time.Duration) { f.offset.Add(int64(d)) }
func (f *fakeClock) opt() func(c *cluster.Config) {
	return func(c *cluster.Config) { cluster.WithClock(c, f.now) }
}

// stopNode stops a node as SIGTERM does (graceful leave) or as SIGKILL does.
func stopNode(t testing.TB, c *cluster.Cluster, graceful bool) {
	t.Helper()
	if graceful {
		// Leave waits for its broadcast to go out: seconds on a busy machine.
		if err := c.Leave(settle); err != nil {
			t.Errorf("leave: %v", err)
		}
	}
	if err := c.Shutdown(); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// The farm: two gateways that are each other's seeds (each lists
// itself too, one list for the farm), exits joined to both. Both gateways
// stop together and start again on the same addresses: each lists every
// exit again, no exit restarted.
func TestRestartedGatewaysGetTheirExitsBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		graceful   bool // SIGTERM (leave) or SIGKILL (no leave)
		exitsSeeds bool // the exits are seeds too
	}{
		{"gateways left, seeds are the gateways", true, false},
		{"gateways killed, seeds are the gateways", false, false},
		{"gateways left, seeds are the gateways and the exits", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gwAddrs := []string{freeGossipAddr(t), freeGossipAddr(t)}
			exitAddrs := []string{freeGossipAddr(t), freeGossipAddr(t), freeGossipAddr(t)}
			seeds := slices.Clone(gwAddrs)
			if tc.exitsSeeds {
				seeds = append(seeds, exitAddrs...)
			}
			startGateways := func() ([]*cluster.Cluster, []*pool.Pool) {
				var gws []*cluster.Cluster
				var pools []*pool.Pool
				for i, addr := range gwAddrs {
					p := newPool(t)
					name := fmt.Sprintf("gw-%d", i+1)
					gws = append(gws, startNode(t, gatewayMeta(name), p, named(name), at(addr), joining(seeds...), rejoiningEvery(rejoinEvery)))
					pools = append(pools, p)
				}
				return gws, pools
			}
			gws, pools := startGateways()
			var exits []*cluster.Cluster
			for i, addr := range exitAddrs {
				exits = append(exits, startNode(t, exitMeta(i), nil, at(addr), joining(seeds...), withEgress(exitEgress(i)), rejoiningEvery(rejoinEvery)))
			}
			for i, p := range pools {
				waitFor(t, settle, fmt.Sprintf("gw-%d lists every exit", i+1), func() bool { return len(p.Exits()) == 3 })
			}

			for _, gw := range gws {
				stopNode(t, gw, tc.graceful)
			}
			for i, e := range exits {
				waitFor(t, settle, fmt.Sprintf("exit-%d sees the gateways gone", i), func() bool { return e.NumMembers() == 3 })
			}

			start := time.Now()
			_, pools = startGateways()
			for i, p := range pools {
				waitFor(t, settle, fmt.Sprintf("restarted gw-%d lists every exit", i+1), func() bool { return len(p.Exits()) == 3 })
			}
			t.Logf("both restarted gateways list every exit %v after their start (rejoin interval %v)",
				time.Since(start).Round(time.Millisecond), rejoinEvery)
		})
	}
}

// A node is never its own seed: alone, with seeds that name itself (by
// address or by host name) and a peer not started yet, it has not joined
// anything and keeps trying, warning once, until the peer is up. A node
// whose only seed is itself waits to be joined.
func TestLoneNodeKeepsTryingItsSeeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		seeds     func(self, peer string) []string
		warning   string
		peerJoins bool // the peer has this node as its seed
	}{
		{"own address listed", func(self, peer string) []string { return []string{self, peer} }, "joining seeds failed", false},
		{"own address by host name", func(self, peer string) []string {
			_, port, _ := net.SplitHostPort(self)
			return []string{"localhost:" + port, peer}
		}, "joining seeds failed", false},
		{"only the peer", func(self, peer string) []string { return []string{peer} }, "joining seeds failed", false},
		{"only its own address", func(self, peer string) []string { return []string{self} }, "no seed to join but this node", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			self, peer := freeGossipAddr(t), freeGossipAddr(t)
			var log logBuffer
			a := startNode(t, gatewayMeta("gw-a"), newPool(t), at(self), joining(tc.seeds(self, peer)...),
				rejoiningEvery(rejoinEvery), loggingTo(&log))
			r := cluster.RejoinRounds(a)
			waitFor(t, settle, "three rejoin rounds", func() bool { return cluster.RejoinRounds(a) >= r+3 })
			if n := a.NumMembers(); n != 1 {
				t.Fatalf("alone, the node sees %d members", n)
			}
			if n := log.count("joined cluster"); n != 0 {
				t.Errorf("alone, the node logs a join:\n%s", log.String())
			}
			if n := log.count("level=WARN", tc.warning); n != 1 {
				t.Errorf("%d warnings %q, want one for the streak:\n%s", n, tc.warning, log.String())
			}

			var peerSeeds []string
			if tc.peerJoins {
				peerSeeds = []string{self}
			}
			startNode(t, gatewayMeta("gw-b"), newPool(t), at(peer), joining(peerSeeds...))
			took := waitFor(t, settle, "the lone node and the peer join", func() bool { return a.NumMembers() == 2 })
			t.Logf("joined %v after the peer started (rejoin interval %v)", took.Round(time.Millisecond), rejoinEvery)
			if !tc.peerJoins {
				waitFor(t, settle, "the join logged", func() bool { return log.count("joined cluster", "members=2") == 1 })
			}
		})
	}
}

// A member that left is tried at its last address until ReconnectTimeout
// passes, then forgotten: an exit scaled down for good is not tried forever.
// The departed exit comes back without seeds, so only the other node's
// rejoin loop can find it.
func TestDepartedMemberTriedUntilReconnectTimeout(t *testing.T) {
	t.Parallel()
	const timeout = time.Hour
	tests := []struct {
		name      string
		after     time.Duration // how long the member stays away, on the fake clock
		wantFound bool
	}{
		{"back before the timeout", timeout - time.Minute, true},
		{"back after the timeout", timeout + time.Minute, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var clock fakeClock
			gw := startNode(t, gatewayMeta("gw"), newPool(t), rejoiningEvery(rejoinEvery), clock.opt(),
				func(c *cluster.Config) { c.ReconnectTimeout = timeout })
			addr := freeGossipAddr(t)
			ex := startNode(t, exitMeta(1), nil, at(addr), joining(gw.Addr()), withEgress(exitEgress(1)))
			waitFor(t, settle, "the exit joined", func() bool { return gw.NumMembers() == 2 })
			stopNode(t, ex, true)
			waitFor(t, settle, "the gateway remembers the exit", func() bool {
				return slices.Equal(cluster.Departed(gw), []string{"exit-1"})
			})

			clock.advance(tc.after)
			r := cluster.RejoinRounds(gw)
			waitFor(t, settle, "two rejoin rounds", func() bool { return cluster.RejoinRounds(gw) >= r+2 })
			if got, want := len(cluster.Departed(gw)) == 1, tc.wantFound; got != want {
				t.Fatalf("departed members after %v: %v", tc.after, cluster.Departed(gw))
			}

			back := startNode(t, exitMeta(1), nil, at(addr), withEgress(exitEgress(1)))
			if tc.wantFound {
				took := waitFor(t, settle, "the gateway finds the exit back", func() bool { return gw.NumMembers() == 2 && back.NumMembers() == 2 })
				t.Logf("found %v after the exit restarted (rejoin interval %v)", took.Round(time.Millisecond), rejoinEvery)
				waitFor(t, settle, "the departure forgotten", func() bool { return len(cluster.Departed(gw)) == 0 })
				return
			}
			r = cluster.RejoinRounds(gw)
			waitFor(t, settle, "five rejoin rounds", func() bool { return cluster.RejoinRounds(gw) >= r+5 })
			if n, m := gw.NumMembers(), back.NumMembers(); n != 1 || m != 1 {
				t.Errorf("after the timeout the gateway sees %d members and the exit %d, want each only itself", n, m)
			}
		})
	}
}

// The departed members a node remembers are bounded, the oldest forgotten
// first; the node itself is never one of them.
func TestDepartedMembersAreBounded(t *testing.T) {
	t.Parallel()
	var clock fakeClock
	c := startNode(t, gatewayMeta("gw"), newPool(t), clock.opt(), rejoiningEvery(time.Hour))
	meta := cluster.EncodeMeta(ptr(exitMeta(1)))
	extra := 100
	for i := range cluster.MaxDeparted + extra {
		clock.advance(time.Millisecond)
		cluster.NotifyLeave(c, &memberlist.Node{
			Name: fmt.Sprintf("gone-%04d", i), Addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i % 250)}).AsSlice(),
			Port: uint16(7000 + i), Meta: meta,
		})
	}
	self, _ := netip.ParseAddrPort(c.Addr())
	cluster.NotifyLeave(c, &memberlist.Node{Name: "gw", Addr: self.Addr().AsSlice(), Port: self.Port(), Meta: cluster.EncodeMeta(ptr(gatewayMeta("gw")))})
	cluster.NotifyLeave(c, &memberlist.Node{Name: "alias", Addr: self.Addr().AsSlice(), Port: self.Port(), Meta: meta})

	got := cluster.Departed(c)
	if len(got) != cluster.MaxDeparted {
		t.Fatalf("%d departed members remembered, want %d", len(got), cluster.MaxDeparted)
	}
	if want := fmt.Sprintf("gone-%04d", extra); got[0] != want {
		t.Errorf("oldest remembered %s, want %s (the %d oldest forgotten)", got[0], want, extra)
	}
	if slices.Contains(got, "gw") || slices.Contains(got, "alias") {
		t.Error("the node remembers itself as departed")
	}
}

func ptr[T any](v T) *T { return &v }
