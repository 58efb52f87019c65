package pool_test

import (
	"errors"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/pool"
)

func TestPolicyDistribution(t *testing.T) {
	t.Parallel()
	const picks = 100_000
	tests := []struct {
		name    string
		policy  string
		weights []int
		// setup runs before the picks; open makes every pick open a tunnel
		// (never closed), as least_conn sees it in production.
		setup func(t *testing.T, p *pool.Pool)
		open  bool
		want  []float64 // share of picks per exit e-0000, e-0001, ...
	}{
		{name: "random is uniform", policy: pool.PolicyRandom, weights: []int{1, 1, 1, 1}, want: []float64{.25, .25, .25, .25}},
		{name: "random ignores weights", policy: pool.PolicyRandom, weights: []int{1, 5, 1, 1}, want: []float64{.25, .25, .25, .25}},
		{name: "round robin takes turns", policy: pool.PolicyRoundRobin, weights: []int{1, 1, 1, 1}, want: []float64{.25, .25, .25, .25}},
		{name: "weighted follows weights", policy: pool.PolicyWeighted, weights: []int{1, 2, 3, 4}, want: []float64{.1, .2, .3, .4}},
		{name: "weighted zero weight is one", policy: pool.PolicyWeighted, weights: []int{0, 1, 2, 0}, want: []float64{.2, .2, .4, .2}},
		{name: "weighted skewed", policy: pool.PolicyWeighted, weights: []int{1, 100}, want: []float64{1.0 / 101, 100.0 / 101}},
		{name: "least conn balances open tunnels", policy: pool.PolicyLeastConn, weights: []int{1, 1, 1, 1}, open: true, want: []float64{.25, .25, .25, .25}},
		{
			name: "least latency power of two choices", policy: pool.PolicyLeastLatency, weights: []int{1, 1, 1, 1},
			setup: func(t *testing.T, p *pool.Pool) {
				for i, ms := range []int{10, 20, 40, 80} {
					p.Report(idOf(i), pool.OK, time.Duration(ms)*time.Millisecond)
				}
			},
			// Each of the 6 pairs is equally likely; the faster one wins.
			want: []float64{3.0 / 6, 2.0 / 6, 1.0 / 6, 0},
		},
		{name: "least latency unsampled exits are equal", policy: pool.PolicyLeastLatency, weights: []int{1, 1, 1, 1}, want: []float64{.25, .25, .25, .25}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exits := mkExits(len(tc.weights), "e", "eu", "DE")
			for i, w := range tc.weights {
				exits[i].Weight = w
			}
			f := newPool(t, func(c *pool.Config) { c.DefaultPolicy = tc.policy }, exits...)
			if tc.setup != nil {
				tc.setup(t, f.p)
			}
			got := make(map[string]int)
			for range picks {
				pk, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "resi"})
				if err != nil {
					t.Fatalf("Pick: %v", err)
				}
				got[pk.Exit.ID]++
				if tc.open {
					f.p.TunnelOpened(pk.Exit.ID)
				}
			}
			for i, share := range tc.want {
				n := got[idOf(i)]
				want := share * picks
				if math.Abs(float64(n)-want) > 0.05*want+1 {
					t.Errorf("%s: %d picks, want %.0f ±5%% (all: %v)", idOf(i), n, want, got)
				}
			}
		})
	}
}

func idOf(i int) string {
	return mkExits(i+1, "e", "", "")[i].ID
}

// Requests without a session rotate over the pool's exits under the
// default policy, sequential ones too (every exit idle at each pick), and
// one slow set-up through an exit does not take it out of rotation.
func TestDefaultPolicyRotatesSequentialPicks(t *testing.T) {
	t.Parallel()
	const picks = 40
	tests := []struct {
		name string
		// setup is how long each exit's first tunnel took to set up, ms.
		setup []float64
	}{
		{name: "no samples", setup: nil},
		{name: "one slow set-up", setup: []float64{40, 0.5, 0.5, 0.5}},
		{name: "every exit a different speed", setup: []float64{0.4, 0.5, 0.6, 0.7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newPool(t, nil, mkExits(4, "e", "eu", "DE")...)
			for i, ms := range tc.setup {
				f.p.Report(idOf(i), pool.OK, time.Duration(ms*float64(time.Millisecond)))
			}
			got := make(map[string]int)
			for range picks {
				pk, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "resi"})
				if err != nil {
					t.Fatal(err)
				}
				id := pk.Exit.ID
				got[id]++
				// What the gateway does with a request: open, report, close.
				f.p.TunnelOpened(id)
				f.p.Report(id, pool.OK, 500*time.Microsecond)
				f.p.TunnelClosed(id)
			}
			for i := range 4 {
				if n := got[idOf(i)]; n < 5 || n > 15 {
					t.Errorf("%s got %d of %d picks, want 5..15 (all: %v)", idOf(i), n, picks, got)
				}
			}
		})
	}
}

func TestLeastConnAvoidsBusyExit(t *testing.T) {
	t.Parallel()
	f := newPool(t, func(c *pool.Config) { c.DefaultPolicy = pool.PolicyLeastConn }, mkExits(3, "e", "eu", "DE")...)
	for range 5 {
		f.p.TunnelOpened("e-0000")
		f.p.TunnelOpened("e-0001")
	}
	got := pickN(t, f.p, pool.Criteria{Pool: "resi"}, 50)
	if got["e-0002"] != 50 {
		t.Errorf("picks %v, want all on the idle e-0002", got)
	}
}

func TestPickFilters(t *testing.T) {
	t.Parallel()
	exits := []pool.Exit{
		{ID: "eu-de-1", DC: "eu", Pool: "resi", Country: "DE", City: "berlin"},
		{ID: "eu-de-2", DC: "eu", Pool: "resi", Country: "de", City: "Berlin"}, // normalised
		{ID: "us-us-1", DC: "us", Pool: "resi", Country: "US", City: "nyc"},
		{ID: "us-de-1", DC: "us", Pool: "resi", Country: "DE", City: "munich"},
		{ID: "eu-dc-1", DC: "eu", Pool: "dc", Country: "DE", Capacity: 1},
		{ID: "eu-dc-2", DC: "eu", Pool: "dc", Country: "DE"},
	}
	tests := []struct {
		name  string
		setup func(p *pool.Pool)
		c     pool.Criteria
		want  []string // nil: ErrNoExit
	}{
		{name: "local dc preferred", c: pool.Criteria{Pool: "resi"}, want: []string{"eu-de-1", "eu-de-2"}},
		{name: "pool name case-insensitive", c: pool.Criteria{Pool: "RESI"}, want: []string{"eu-de-1", "eu-de-2"}},
		{name: "country only in another dc", c: pool.Criteria{Pool: "resi", Country: "us"}, want: []string{"us-us-1"}},
		{name: "country in both dcs stays local", c: pool.Criteria{Pool: "resi", Country: "DE"}, want: []string{"eu-de-1", "eu-de-2"}},
		{name: "city", c: pool.Criteria{Pool: "resi", City: "munich"}, want: []string{"us-de-1"}},
		{name: "dc is a hard filter", c: pool.Criteria{Pool: "resi", DC: "us"}, want: []string{"us-us-1", "us-de-1"}},
		{name: "dc and country", c: pool.Criteria{Pool: "resi", DC: "US", Country: "DE"}, want: []string{"us-de-1"}},
		{name: "dc hard filter has no spill", c: pool.Criteria{Pool: "resi", DC: "us", Exclude: []string{"us-us-1", "us-de-1"}}},
		{name: "excluded local exits spill", c: pool.Criteria{Pool: "resi", Exclude: []string{"eu-de-1", "eu-de-2"}}, want: []string{"us-us-1", "us-de-1"}},
		{
			name:  "draining local exits spill",
			setup: func(p *pool.Pool) { p.Drain("eu-de-1", true); p.Drain("eu-de-2", true) },
			c:     pool.Criteria{Pool: "resi"}, want: []string{"us-us-1", "us-de-1"},
		},
		{
			name:  "undrained exit is back",
			setup: func(p *pool.Pool) { p.Drain("eu-de-1", true); p.Drain("eu-de-1", false) },
			c:     pool.Criteria{Pool: "resi"}, want: []string{"eu-de-1", "eu-de-2"},
		},
		{
			name:  "exit at capacity is skipped",
			setup: func(p *pool.Pool) { p.TunnelOpened("eu-dc-1") },
			c:     pool.Criteria{Pool: "dc"}, want: []string{"eu-dc-2"},
		},
		{
			name:  "closed tunnel frees capacity",
			setup: func(p *pool.Pool) { p.TunnelOpened("eu-dc-1"); p.TunnelClosed("eu-dc-1") },
			c:     pool.Criteria{Pool: "dc"}, want: []string{"eu-dc-1", "eu-dc-2"},
		},
		{name: "unknown pool", c: pool.Criteria{Pool: "mobile"}},
		{name: "unknown country", c: pool.Criteria{Pool: "resi", Country: "FR"}},
		{name: "everything excluded", c: pool.Criteria{Pool: "dc", Exclude: []string{"eu-dc-1", "eu-dc-2"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newPool(t, func(c *pool.Config) {
				c.LocalDC = "eu"
				c.DefaultPolicy = pool.PolicyRandom
			}, exits...)
			if tc.setup != nil {
				tc.setup(f.p)
			}
			if tc.want == nil {
				pk, err := f.p.Pick(t.Context(), tc.c)
				if !errors.Is(err, pool.ErrNoExit) {
					t.Fatalf("Pick = %v, %v; want ErrNoExit", pk.Exit, err)
				}
				return
			}
			got := pickN(t, f.p, tc.c, 200)
			if ids := slices.Sorted(maps.Keys(got)); !slices.Equal(ids, slices.Sorted(slices.Values(tc.want))) {
				t.Errorf("picked %v, want exactly %v", got, tc.want)
			}
		})
	}
}

func TestPickRotatesEgress(t *testing.T) {
	t.Parallel()
	f := newPool(t, nil, mkExits(1, "e", "eu", "DE")...)
	seen := make(map[string]int)
	for range 1000 {
		pk, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "resi"})
		if err != nil {
			t.Fatal(err)
		}
		seen[pk.Egress.String()]++
	}
	if len(seen) != 2 || seen["10.1.0.0"] < 400 || seen["11.1.0.0"] < 400 {
		t.Errorf("egress picks %v, want both IPs about evenly", seen)
	}
}

func TestPickNoEgress(t *testing.T) {
	t.Parallel()
	f := newPool(t, nil, pool.Exit{ID: "static", Pool: "resi", Addr: "socks5://u:p@host:1080"})
	pk, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "resi"})
	if err != nil {
		t.Fatal(err)
	}
	if pk.Egress.IsValid() || pk.Exit.Addr != "socks5://u:p@host:1080" {
		t.Errorf("pick = %+v, egress %v; want the static exit with no egress", pk.Exit, pk.Egress)
	}
}

func TestPickErrorNamesCriteria(t *testing.T) {
	t.Parallel()
	f := newPool(t, nil, mkExits(1, "e", "eu", "DE")...)
	_, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "resi", Country: "FR"})
	if !errors.Is(err, pool.ErrNoExit) {
		t.Fatalf("err = %v, want ErrNoExit", err)
	}
	for _, want := range []string{`pool="resi"`, `country="FR"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err %q does not name %s", err, want)
		}
	}
}

// least_latency weighs latency by load, so a fast exit that is busy yields
// to a slower idle one and no exit starves on an old sample.
func TestLeastLatencyDoesNotStarveASlowerExit(t *testing.T) {
	t.Parallel()
	f := newPool(t, func(c *pool.Config) { c.DefaultPolicy = pool.PolicyLeastLatency }, mkExits(2, "e", "eu", "DE")...)
	f.p.Report("e-0000", pool.OK, 10*time.Millisecond)
	f.p.Report("e-0001", pool.OK, 20*time.Millisecond)
	if got := pickN(t, f.p, pool.Criteria{Pool: "resi"}, 100); got["e-0000"] != 100 {
		t.Fatalf("idle exits: picks %v, want all on the faster e-0000", got)
	}
	for range 3 {
		f.p.TunnelOpened("e-0000")
	}
	if got := pickN(t, f.p, pool.Criteria{Pool: "resi"}, 100); got["e-0001"] != 100 {
		t.Fatalf("e-0000 busy with 3 tunnels (cost 40ms) vs idle e-0001 (20ms): picks %v, want all on e-0001", got)
	}
}

func TestSetPoliciesTakesEffectAtOnce(t *testing.T) {
	t.Parallel()
	f := newPool(t, func(c *pool.Config) { c.DefaultPolicy = pool.PolicyLeastLatency }, mkExits(2, "e", "eu", "DE")...)
	f.p.Report("e-0000", pool.OK, time.Millisecond)
	f.p.Report("e-0001", pool.OK, 50*time.Millisecond)
	if got := pickN(t, f.p, pool.Criteria{Pool: "resi"}, 100); got["e-0000"] != 100 {
		t.Fatalf("least_latency: %v", got)
	}
	if err := f.p.SetPolicies(pool.PolicyLeastLatency, map[string]string{"resi": pool.PolicyRoundRobin}); err != nil {
		t.Fatal(err)
	}
	if got := pickN(t, f.p, pool.Criteria{Pool: "resi"}, 100); got["e-0000"] != 50 || got["e-0001"] != 50 {
		t.Fatalf("round_robin after reload: %v", got)
	}
	if err := f.p.SetPolicies("fastest", nil); err == nil {
		t.Fatal("unknown policy accepted")
	}
}
