package e2e

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/pool"
)

// An exit dies while customers keep sending requests: failover before the
// first byte means none of them fails while the other matching exit is up.
func TestFailoverWhenAnExitDies(t *testing.T) {
	t.Parallel()
	// Round robin sends every other pick to the dead exit, so failover is
	// exercised (a latency-aware policy might simply avoid it).
	// No active probes: under a loaded test run they could mark the dead
	// exit down before the failed attempts eject it, and this test is about
	// the attempts (passive health).
	f := startFarm(t, func(c *demo.Config) {
		pc := pool.DefaultConfig()
		pc.LocalDC = "eu"
		pc.DefaultPolicy = pool.PolicyRoundRobin
		c.Pool = &pc
		c.NoProbes = true
	})
	const workers, perWorker = 4, 30
	var done, failed atomic.Int64
	var killOnce sync.Once
	var wg sync.WaitGroup
	urls := []string{"http://" + f.Origin.HTTPAddr + "/ip", "https://" + f.Origin.TLSAddr + "/ip"}
	var mu sync.Mutex
	var failures []string
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				if done.Load() == workers*perWorker/3 {
					killOnce.Do(func() {
						if err := f.StopExit("eu-1"); err != nil {
							t.Error(err)
						}
					})
				}
				// "demo" targets pool resi in the gateway's DC: eu-1 and eu-2.
				r := curl(t, proxyURL(f, "demo"), urls[(w+i)%2])
				done.Add(1)
				if r.status != 200 {
					failed.Add(1)
					mu.Lock()
					failures = append(failures, r.all.Get("X-Farmgate-Error"))
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed after eu-1 died: %v", failed.Load(), done.Load(), failures)
	}
	// The failed attempts were reported: passive health ejected the dead exit.
	for _, e := range f.Pool.Exits() {
		if e.ID == "eu-1" && e.State != pool.StateEjected {
			t.Errorf("eu-1 is %s after dying, want %s", e.State, pool.StateEjected)
		}
	}
}
