package cluster

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/farmgate/farmgate/pool"
)

// Sink is what a gateway's cluster feeds: the exits it learns about and their
// drain state. *pool.Pool satisfies it. Its methods are called from the
// cluster's worker goroutine only, one at a time; they may take a while
// without stalling gossip.
type Sink interface {
	// Upsert adds an exit or updates the one with the same ID.
	Upsert(e pool.Exit)
	// Remove forgets an exit; unknown ids are ignored.
	Remove(id string)
	// Drain marks an exit draining (no new tunnels) or not.
	Drain(id string, draining bool) error
}

var _ Sink = (*pool.Pool)(nil)

// batchSink is a Sink that can apply many changes at once (pool.Pool.Apply);
// the worker uses it for bursts such as a gateway joining a large farm.
type batchSink interface {
	Apply(upserts []pool.Exit, removes []string)
}

// How long Members lists departed members. A member that left (scaled
// down, restarted) is listed for a minute, long enough to see it go; one
// that failed stays ten, so that an operator notices. Then they are
// forgotten.
const (
	leftRetention = time.Minute
	deadRetention = 10 * time.Minute
)

// expired reports whether departed member r is past its retention at now
// (unix nanoseconds).
func expired(r *memberRec, now int64) bool {
	switch r.state {
	case StateLeft:
		return now-r.since > int64(leftRetention)
	case StateDead:
		return now-r.since > int64(deadRetention)
	}
	return false
}

// applied is what the worker last told the sink about one exit.
type applied struct {
	exit     pool.Exit
	draining bool
}

// resolved is an egress list fetched by Config.Resolve for a metadata hash.
type resolved struct {
	hash  uint32
	addrs []netip.Addr
}

// wanted is a snapshot, taken under c.mu, of what the worker needs to bring
// the sink up to date about one exit.
type wanted struct {
	id      string
	present bool // an alive exit member
	meta    Meta
	egress  *egressEntry
	drain   bool // an operator drain verdict is on
}

// feeder is the worker's own state; only the worker goroutine touches it.
type feeder struct {
	applied  map[string]*applied
	resolved map[string]resolved
	retry    map[string]struct{}
}

// runWorker is the one goroutine that turns membership into sink calls. It
// wakes on c.kick, and every RetryInterval to retry exits it could not
// resolve and to forget long-departed members.
func (c *Cluster) runWorker() {
	defer c.wg.Done()
	f := &feeder{applied: map[string]*applied{}, resolved: map[string]resolved{}, retry: map[string]struct{}{}}
	t := time.NewTicker(c.cfg.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
			c.mu.Lock()
			for id := range f.retry {
				c.markLocked(id)
			}
			c.pruneLocked()
			c.mu.Unlock()
			clear(f.retry)
		}
		c.safely("worker", func() { c.feedOnce(f) })
	}
}

// safely runs fn and turns a panic into a log line, so a loop keeps its
// cadence.
func (c *Cluster) safely(loop string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in cluster loop", "loop", loop, "panic", fmt.Sprint(r))
		}
	}()
	fn()
}

// pruneLocked forgets departed members past their retention, and the
// egress lists of exits no longer present. c.mu must be held.
func (c *Cluster) pruneLocked() {
	now := c.now().UnixNano()
	for name, r := range c.members {
		if expired(r, now) {
			delete(c.members, name)
			if c.byID[r.meta.ID] == name {
				delete(c.byID, r.meta.ID)
			}
		}
	}
	for id := range c.egress {
		if c.exitLocked(id) == nil {
			delete(c.egress, id)
		}
	}
}

// feedOnce takes the dirty set and brings the sink up to date about it.
func (c *Cluster) feedOnce(f *feeder) {
	c.mu.Lock()
	if len(c.dirty) == 0 {
		c.mu.Unlock()
		return
	}
	ws := make([]wanted, 0, len(c.dirty))
	for id := range c.dirty {
		w := wanted{id: id}
		if rec := c.exitLocked(id); rec != nil && rec.alive() {
			w.present, w.meta = true, rec.meta
		}
		if e, ok := c.egress[id]; ok {
			w.egress = &e
		}
		w.drain = c.drains[id].on
		ws = append(ws, w)
	}
	clear(c.dirty)
	c.mu.Unlock()
	if c.sink == nil {
		return // an exit: it relays state but feeds no pool
	}
	slices.SortFunc(ws, func(a, b wanted) int { return cmp.Compare(a.id, b.id) })

	var upserts []pool.Exit
	var removes []string
	for i := range ws {
		w := &ws[i]
		old := f.applied[w.id]
		if !w.present {
			delete(f.resolved, w.id)
			if old != nil {
				removes = append(removes, w.id)
				delete(f.applied, w.id)
				c.log.Info("exit removed from pool", "exit", w.id)
			}
			continue
		}
		egress, ok := c.egressFor(f, w)
		if !ok {
			continue // not known yet: a broadcast, push/pull or retry marks it again
		}
		e := pool.Exit{
			ID: w.meta.ID, DC: w.meta.DC, Pool: w.meta.Pool, Country: w.meta.Country, City: w.meta.City,
			Egress: egress, Weight: w.meta.Weight, Capacity: w.meta.Capacity,
			Addr: "farmgate://" + w.meta.ProxyAddr,
		}
		if old == nil || !sameExit(&old.exit, &e) {
			upserts = append(upserts, e)
			if old == nil {
				f.applied[w.id] = &applied{exit: e}
				c.log.Info("exit added to pool", "exit", e.ID, "pool", e.Pool, "dc", e.DC, "addr", e.Addr, "egress", len(e.Egress))
			} else {
				old.exit = e
				c.log.Info("exit updated in pool", "exit", e.ID)
			}
		}
	}
	if b, ok := c.sink.(batchSink); ok && len(upserts)+len(removes) > 1 {
		b.Apply(upserts, removes)
	} else {
		for _, e := range upserts {
			c.sink.Upsert(e)
		}
		for _, id := range removes {
			c.sink.Remove(id)
		}
	}
	for i := range ws {
		w := &ws[i]
		a := f.applied[w.id]
		if a == nil {
			continue
		}
		want := w.meta.Draining || w.drain
		if a.draining == want {
			continue
		}
		if err := c.sink.Drain(w.id, want); err != nil {
			c.log.Warn("exit drain not applied", "exit", w.id, "draining", want, "err", err)
			continue
		}
		a.draining = want
		c.log.Info("exit drain state changed", "exit", w.id, "draining", want)
	}
}

// egressFor returns the egress list to give the pool for w, and false when it
// is not known yet.
func (c *Cluster) egressFor(f *feeder, w *wanted) ([]netip.Addr, bool) {
	if w.meta.EgressCount == 0 {
		return nil, true
	}
	if c.cfg.Resolve == nil {
		if w.egress != nil && w.egress.hash == w.meta.EgressHash {
			return w.egress.addrs, true
		}
		c.log.Debug("exit waits for its egress list", "exit", w.id)
		return nil, false
	}
	if r, ok := f.resolved[w.id]; ok && r.hash == w.meta.EgressHash {
		return r.addrs, true
	}
	var err error
	for attempt := range c.cfg.ResolveAttempts {
		if attempt > 0 {
			select {
			case <-c.ctx.Done():
				return nil, false
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		var addrs []netip.Addr
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.ResolveTimeout)
		addrs, err = c.cfg.Resolve(ctx, w.meta)
		cancel()
		if err == nil {
			f.resolved[w.id] = resolved{hash: w.meta.EgressHash, addrs: addrs}
			return addrs, true
		}
		if c.ctx.Err() != nil {
			return nil, false
		}
	}
	c.log.Warn("exit not resolved, retrying later", "exit", w.id, "attempts", c.cfg.ResolveAttempts, "err", err)
	f.retry[w.id] = struct{}{}
	return nil, false
}

func sameExit(a, b *pool.Exit) bool {
	return a.ID == b.ID && a.DC == b.DC && a.Pool == b.Pool && a.Country == b.Country &&
		a.City == b.City && a.Weight == b.Weight && a.Capacity == b.Capacity &&
		a.Addr == b.Addr && slices.Equal(a.Egress, b.Egress)
}
