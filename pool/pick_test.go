package pool_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/farmgate/farmgate/pool"
)

// farm returns n exits over 2 DCs and 10 countries in pool "resi".
func farm(n int) []pool.Exit {
	exits := make([]pool.Exit, 0, n)
	countries := []string{"US", "DE", "FR", "GB", "JP", "BR", "IN", "CA", "AU", "NL"}
	for i := range n {
		dc := "eu"
		if i%2 == 1 {
			dc = "us"
		}
		e := mkExits(1, fmt.Sprintf("x%05d", i), dc, countries[i%len(countries)])[0]
		e.Weight = 1 + i%5
		exits = append(exits, e)
	}
	return exits
}

func TestPickAllocatesNothing(t *testing.T) {
	t.Parallel()
	policies := []string{pool.PolicyLeastLatency, pool.PolicyRoundRobin, pool.PolicyWeighted, pool.PolicyLeastConn, pool.PolicyRandom}
	criteria := []pool.Criteria{
		{Pool: "resi"},
		{Pool: "resi", Country: "DE"},
		{Pool: "resi", Country: "us", DC: "us", Exclude: []string{"x00001-0000"}},
	}
	for _, pol := range policies {
		t.Run(pol, func(t *testing.T) {
			t.Parallel()
			f := newPool(t, func(c *pool.Config) {
				c.LocalDC = "eu"
				c.DefaultPolicy = pol
			}, farm(10_000)...)
			for i := range 50 { // some unhealthy exits on the way
				f.p.Drain(fmt.Sprintf("x%05d-0000", i*7), true)
			}
			ctx := t.Context()
			for _, c := range criteria {
				allocs := testing.AllocsPerRun(1000, func() {
					if _, err := f.p.Pick(ctx, c); err != nil {
						t.Fatal(err)
					}
				})
				if allocs != 0 {
					t.Errorf("Pick(%+v) allocates %.1f times per run, want 0", c, allocs)
				}
			}
		})
	}
}

// TestConcurrentPicksAndChanges runs picks, reports and membership changes at
// once; the race detector is the judge, plus no pick may fail while exits
// remain.
func TestConcurrentPicksAndChanges(t *testing.T) {
	t.Parallel()
	f := newPool(t, func(c *pool.Config) { c.LocalDC = "eu" }, farm(200)...)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := pool.Criteria{Pool: "resi"}
				if w%2 == 0 {
					c.Customer, c.Session = "c", fmt.Sprint(i%50)
				}
				pk, err := f.p.Pick(t.Context(), c)
				if err != nil {
					t.Errorf("Pick: %v", err)
					return
				}
				f.p.TunnelOpened(pk.Exit.ID)
				f.p.Report(pk.Exit.ID, pool.Outcome(i%3), 0)
				f.p.TunnelClosed(pk.Exit.ID)
			}
		})
	}
	extra := farm(220)[200:]
	for i := range 200 {
		e := extra[i%20]
		if i%2 == 0 {
			f.p.Upsert(e)
		} else {
			f.p.Remove(e.ID)
		}
		_ = f.p.Exits()
		f.p.ProbeOnce(t.Context())
	}
	close(stop)
	wg.Wait()
}
