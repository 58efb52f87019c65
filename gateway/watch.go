package gateway

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/internal/dataplane/tcpinfo"
)

// Meter counts customers' traffic and knows their quotas. The gateway hands
// it the bytes of every tunnel and request; it must not block.
type Meter interface {
	// Add counts bytes sent by the customer (up) and to the customer (down)
	// on their connection, heads included (usage.go has the rule).
	Add(user, pool string, up, down int64)
	// OverQuota reports whether the customer has used up their quota.
	OverQuota(c *auth.Customer) bool
}

// watch runs until Shutdown: every CheckInterval it reads each live
// tunnel's customer connection from the kernel, meters the bytes moved
// since the last look, and closes tunnels that idled out or whose customer
// ran out of quota. Every sweepEvery it also closes the connections to
// exits that idled too long (upstream.Set.Sweep).
func (g *Gateway) watch() {
	defer close(g.watchDone)
	// Jitter the first tick so gateways started together do not align.
	first := time.NewTimer(time.Duration(rand.Int64N(int64(g.cfg.CheckInterval))) + time.Millisecond)
	defer first.Stop()
	select {
	case <-g.watchStop:
		return
	case <-first.C:
	}
	tick := time.NewTicker(g.cfg.CheckInterval)
	defer tick.Stop()
	lastSweep := time.Now()
	for {
		g.watchOnce()
		if now := time.Now(); now.Sub(lastSweep) >= sweepEvery {
			g.exits.Sweep(now)
			lastSweep = now
		}
		select {
		case <-g.watchStop:
			return
		case <-tick.C:
		}
	}
}

func (g *Gateway) watchOnce() {
	defer func() {
		if r := recover(); r != nil {
			g.logger.Error("panic watching tunnels", "panic", r)
		}
	}()
	now := g.cfg.Now()
	var expired map[string][]*tunnel
	g.tunnels.Range(func(k, _ any) bool {
		t := k.(*tunnel)
		if !t.live.Load() {
			return true // its relay is starting
		}
		g.check(t)
		if e := t.recheck.Load(); e != 0 && now.UnixNano() >= e {
			if expired == nil {
				expired = map[string][]*tunnel{}
			}
			expired[t.customer.User] = append(expired[t.customer.User], t)
		}
		return true
	})
	for user, ts := range expired {
		g.cutExpired(user, ts, now)
	}
}

// cutExpired ends the tunnels of a customer whose account, as it was when
// they opened, has expired since, unless the store says it was renewed:
// then it asks again in expiryRecheck.
func (g *Gateway) cutExpired(user string, ts []*tunnel, now time.Time) {
	if next, ok := g.renewedUntil(user, now); ok {
		for _, t := range ts {
			t.recheck.Store(next)
		}
		return
	}
	g.logger.Info("customer expired, cutting tunnels", "customer", user, "tunnels", len(ts))
	for _, t := range ts {
		t.recheck.Store(0)
		t.shut()
	}
}

// expiryRecheck is how long a renewal found after an expiry holds before
// the store is asked again.
const expiryRecheck = time.Minute

// renewedUntil asks the store about a customer whose account had expired
// by what the gateway knew: if it was renewed, when (UnixNano) to ask
// again; false if the account is over.
func (g *Gateway) renewedUntil(user string, now time.Time) (int64, bool) {
	if !g.allowedNow(user) {
		return 0, false
	}
	return now.Add(expiryRecheck).UnixNano(), true
}

// allowedNow asks the current customer store whether user may still log
// in. A store that cannot tell (Redis down) gets the benefit of the doubt;
// one that cannot be asked leaves the customer as admitted, expired.
func (g *Gateway) allowedNow(user string) bool {
	switch s := (*g.authn.Load()).(type) {
	case interface{ Allows(string) bool }:
		return s.Allows(user)
	case remoteStore:
		ctx, cancel := context.WithTimeout(g.ctx, time.Second)
		defer cancel()
		return allowsUnlessTold(ctx, s, user)
	}
	return false
}

// expiresAt is when a customer admitted now must be asked about again:
// the account's expiry, as UnixNano, or 0 for never.
func expiresAt(c *auth.Customer) int64 {
	if c.Expires.IsZero() {
		return 0
	}
	return c.Expires.UnixNano()
}

// sweepEvery is how often idle connections to exits are swept.
const sweepEvery = 10 * time.Second

// check meters one tunnel and closes it if it idled out or is over quota.
func (g *Gateway) check(t *tunnel) {
	info, ok := tcpinfo.Read(socketOf(t.conns[0]))
	if !ok {
		return
	}
	t.mu.Lock()
	if !t.final {
		up := int64(info.BytesReceived - t.base.BytesReceived)
		down := int64(info.BytesAcked - t.base.BytesAcked)
		g.count(t, up-t.reported[0], down-t.reported[1])
		t.reported = [2]int64{max(up, t.reported[0]), max(down, t.reported[1])}
	}
	t.mu.Unlock()

	limit := g.cfg.IdleTimeout
	if t.halfClosed.Load() {
		limit = g.cfg.FinTimeout
	}
	switch {
	case info.Idle() >= limit:
		g.logger.Debug("tunnel idle, closing", "customer", t.customer.User, "exit", t.exit, "idle", info.Idle().String())
		t.shut()
	case g.meter != nil && g.meter.OverQuota(t.customer):
		g.logger.Info("customer over quota, cutting tunnel", "customer", t.customer.User, "exit", t.exit)
		t.shut()
	}
}

// settle hands the meter what the watcher has not yet counted, from the
// exact totals the copy returned. It runs once, when the tunnel ends.
func (g *Gateway) settle(t *tunnel, up, down int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	g.count(t, up-t.reported[0], down-t.reported[1])
	t.reported = [2]int64{up, down}
	t.final = true
}

func (g *Gateway) count(t *tunnel, up, down int64) {
	up, down = max(up, 0), max(down, 0)
	if up == 0 && down == 0 {
		return
	}
	if g.meter != nil {
		g.meter.Add(t.customer.User, t.pool, up, down)
	}
	g.metrics.bytes(t.pool, t.exit, t.customer.User, up, down)
}
