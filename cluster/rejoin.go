package cluster

import (
	"math/rand/v2"
	"time"
)

// runRejoin is the loop that heals partitions: every RejoinInterval (±20%
// jitter) it re-joins the seeds if this node has never joined or sees fewer
// members than the most it has seen (graceful leaves lower that mark).
func (c *Cluster) runRejoin() {
	defer c.wg.Done()
	if len(c.cfg.Join) == 0 {
		return
	}
	timer := time.NewTimer(c.jitter(c.cfg.RejoinInterval))
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-timer.C:
		}
		c.safely("rejoin", func() {
			if c.needsRejoin() {
				c.join()
			}
		})
		timer.Reset(c.jitter(c.cfg.RejoinInterval))
	}
}

// needsRejoin reports whether the seeds should be joined again.
func (c *Cluster) needsRejoin() bool {
	n := c.ml.NumMembers() // before c.mu: never hold it while calling memberlist
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.joined || n < c.maxSeen
}

// join contacts the seeds; a failure is logged, not returned, since the
// rejoin loop retries. memberlist bounds each seed's attempt by TCPTimeout.
func (c *Cluster) join() {
	n, err := c.ml.Join(c.cfg.Join)
	if n == 0 {
		c.log.Warn("joining seeds failed, will retry", "seeds", c.cfg.Join, "err", err)
		return
	}
	c.mu.Lock()
	first := !c.joined
	c.joined = true
	c.mu.Unlock()
	if first {
		c.log.Info("joined cluster", "seeds_reached", n, "members", c.ml.NumMembers())
	} else {
		c.log.Info("rejoined seeds", "seeds_reached", n, "members", c.ml.NumMembers())
	}
	c.announceEgress()
}

// jitter returns d moved randomly by up to ±20%.
func (c *Cluster) jitter(d time.Duration) time.Duration {
	c.randMu.Lock()
	f := 0.8 + 0.4*c.rand.Float64()
	c.randMu.Unlock()
	return time.Duration(float64(d) * f)
}

// newRand seeds the jitter source.
func newRand() *rand.Rand { return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())) }
