package cluster_test

import (
	"cmp"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cluster"
	"github.com/farmgate/farmgate/pool"
)

// TestLargeClusterConverges starts 2 gateways and 198 exits with the LAN
// profile in this process, all on 127.0.0.1, each exit joining the two
// gateways as a farm is deployed (deploy/compose: --join=gw-eu,gw-us). It
// checks that:
//   - every gateway's pool holds every exit, with its gossiped egress list
//     (the log says how long after the last start; the bar is 10 s,
//     the test fails past a minute, which a machine busy with another test
//     run needs);
//   - every member, exits included, sees all 200 members alive within two
//     push/pull periods (4 minutes): exits learn of each other only through
//     gossip;
//   - once idle, the cluster is whole: every pool holds every exit and
//     every member sees every member (a member falsely declared dead on a
//     starved machine must be back within the same bound; the test logs
//     any);
//   - an exit shut down without leaving is dropped by every gateway, and
//     only that exit.
//
// It logs the figures: convergence time from the first and from the last
// node started, gossip bytes per second per node once converged, and the
// time to detect the dead exit. It takes about 30 s and two CPUs, so it runs
// only with FARMGATE_LARGE_CLUSTER=1, never under -race or -short: .ci/run
// runs it in a step of its own.
func TestLargeClusterConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("200-member cluster takes about 30 s; run without -short")
	}
	if os.Getenv("FARMGATE_LARGE_CLUSTER") == "" {
		// Two of these at once (CI and a developer's go test ./... beside
		// it) starve each other's failure detectors on 2 CPUs until
		// members are declared dead for minutes: .ci/run runs it alone.
		t.Skip("200-member cluster runs only with FARMGATE_LARGE_CLUSTER=1 (.ci/run sets it in a step of its own)")
	}
	if raceEnabled {
		// Measured: under -race the 200 joins alone had not finished after
		// 170 s on a 2-CPU machine (each push/pull of the 200-member state
		// is ~10x slower, and starved nodes time out). The race detector
		// still covers the same code with the 6-node tests; .ci/run runs
		// this test without -race as a separate step.
		t.Skip("200 members in one process do not fit in a test's time under -race; .ci/run runs this test without -race")
	}
	const (
		gateways, exits = 2, 198
		members         = gateways + exits
		// within bounds the wait, after the last exit started, for every
		// gateway's pool to hold every exit: they joined the gateways
		// already, so only the events' delivery is left. Measured about
		// 1 s on a quiet machine; under another test run it took over 10 s.
		// It catches events that never arrive; the test logs the time.
		within = time.Minute
		// membersWithin bounds full membership: exits learn of the exits
		// that started after them by gossip, at LAN speed; measured 6-13 s
		// on a quiet 2-CPU machine. A member that missed a node's gossip
		// learns of it only at a full-state push/pull, which memberlist
		// makes every 30 s on LAN times ceil(log2(n) - log2(32)) + 1, that
		// is every 2 minutes at 200 members: a CI run saw a member still
		// missing one other after 90 s. Two push/pull periods are the
		// bound; it is there to catch gossip that never converges, not to
		// time it (the test logs the time).
		membersWithin = 2 * 4 * 30 * time.Second
		// workers bounds how many nodes start at once: 200 joins at once
		// on 2 CPUs starve the nodes already running.
		workers = 8
	)
	var sent atomic.Int64
	lan := func(c *cluster.Config) {
		c.Profile = cluster.ProfileLAN
		cluster.CountBytes(c, &sent)
	}

	pools := make([]*pool.Pool, gateways)
	gws := make([]*cluster.Cluster, gateways)
	var seeds []string
	for i := range gateways {
		pools[i] = newPool(t)
		gws[i] = startNode(t, gatewayMeta(fmt.Sprintf("gw-%d", i)), pools[i], lan, joining(seeds...))
		seeds = append(seeds, gws[i].Addr())
	}

	// Starting is bounded too: each New waits for its joins (up to the LAN
	// TCPTimeout, 10 s, per seed), so no exit starts after startWithin.
	const startWithin = time.Minute
	first := time.Now()
	nodes := make([]*cluster.Cluster, exits)
	work := make(chan int, exits)
	for i := range exits {
		work <- i
	}
	close(work)
	var started atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range work {
				if time.Since(first) > startWithin {
					return
				}
				nodes[i] = startNode(t, exitMeta(i), nil, lan, joining(seeds...), withEgress(exitEgress(i)))
				started.Add(1)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow() // a node did not start; startNode said which
	}
	if n := started.Load(); n < exits {
		t.Fatalf("only %d of %d exits started within %v", n, exits, startWithin)
	}
	last := time.Now()
	t.Logf("%d exits started (and joined the gateways) in %v", exits, last.Sub(first).Round(time.Millisecond))

	poolsFull := func(want int) bool {
		for _, p := range pools {
			if len(p.Exits()) != want {
				return false
			}
		}
		return true
	}
	// Each exit must reach each pool; once there it counts, as for
	// membership below: on a starved machine an exit may be declared
	// dead and leave the pool until it refutes, which says nothing about
	// whether its join reached the gateways.
	reached := make([]map[string]bool, len(pools))
	for i := range reached {
		reached[i] = map[string]bool{}
	}
	waitFor(t, within-time.Since(last), "every gateway's pool held every exit", func() bool {
		all := true
		for i, p := range pools {
			for _, e := range p.Exits() {
				reached[i][e.ID] = true
			}
			all = all && len(reached[i]) == exits
		}
		return all
	})
	gwDone := time.Now()
	for _, p := range pools {
		for _, s := range p.Exits() {
			if len(s.Egress) != 2 {
				t.Fatalf("exit %s has egress %v", s.ID, s.Egress)
			}
		}
	}
	all := append(append([]*cluster.Cluster{}, gws...), nodes...)
	// Full membership is checked per member and once reached stays
	// reached: on a starved machine the failure detector may declare a
	// live member dead for a while (it refutes and comes back), which says
	// nothing about whether gossip carried every member everywhere.
	// short and fewest say how far from it the cluster was, should it not
	// get there in time.
	sawAll := make([]bool, len(all))
	var short, fewest int
	defer func() {
		if !t.Failed() || short == 0 {
			return
		}
		t.Logf("%d of %d members never saw all %d alive; the fewest saw %d", short, members, members, fewest)
		// Name a few of the members they lack, and how they see them.
		shown := 0
		for i, n := range all {
			if sawAll[i] || shown == 5 {
				continue
			}
			seen := map[string]string{}
			for _, m := range n.Members() {
				seen[m.ID] = m.State
			}
			for _, o := range all {
				id := o.LocalMeta().ID
				if st, ok := seen[id]; !ok || st != cluster.StateAlive {
					t.Logf("%s sees %s as %q", n.LocalMeta().ID, id, cmp.Or(st, "unknown"))
					shown++
				}
			}
		}
	}()
	waitFor(t, membersWithin-time.Since(last), "every member sees every member", func() bool {
		short, fewest = 0, members
		for i, n := range all {
			if k := n.NumMembers(); k == members {
				sawAll[i] = true
			} else if !sawAll[i] {
				short++
				fewest = min(fewest, k)
			}
		}
		return short == 0
	})
	allDone := time.Now()
	t.Logf("converged: every gateway saw every exit %v after the last start (%v after the first); every member saw all %d %v after the last start (%v after the first)",
		gwDone.Sub(last).Round(time.Millisecond), gwDone.Sub(first).Round(time.Millisecond), members,
		allDone.Sub(last).Round(time.Millisecond), allDone.Sub(first).Round(time.Millisecond))

	// Steady state: measure the traffic, then check that the cluster is
	// whole: every pool holds every exit and every member sees every
	// member. A member falsely declared dead on a busy machine must be back
	// within healWithin (it refutes as soon as it hears of its death; a
	// member that missed the refutation hears of it at a push/pull, as
	// above); the test logs any.
	const (
		window     = 5 * time.Second
		healWithin = membersWithin
	)
	before := sent.Load()
	time.Sleep(window)
	perNode := float64(sent.Load()-before) / window.Seconds() / members
	t.Logf("steady-state gossip: %.0f bytes/s per node (all packets and dialled streams, averaged over %d nodes, %v)", perNode, members, window)
	whole := func() (missing int) {
		for _, p := range pools {
			missing += exits - len(p.Exits())
		}
		for _, n := range all {
			missing += members - n.NumMembers()
		}
		return missing
	}
	if m := whole(); m != 0 {
		t.Logf("after %v idle, %d member views lack a member (false deaths on a busy machine?); waiting up to %v for them to heal", window, m, healWithin)
		took := waitFor(t, healWithin, "every pool and every member whole again", func() bool { return whole() == 0 })
		t.Logf("whole again after %v", took.Round(time.Millisecond))
	}

	// An exit dies: shut down without a leave.
	const victim = 100
	kill := time.Now()
	_ = nodes[victim].Shutdown()
	id := exitMeta(victim).ID
	waitFor(t, 60*time.Second, "every gateway drops the dead exit", func() bool {
		for _, p := range pools {
			if _, ok := status(p, id); ok {
				return false
			}
		}
		return true
	})
	t.Logf("dead exit dropped by every gateway %v after its shutdown", time.Since(kill).Round(time.Millisecond))
	if !poolsFull(exits - 1) {
		t.Errorf("pools hold %d and %d exits after the death, want %d", len(pools[0].Exits()), len(pools[1].Exits()), exits-1)
	}
}
