package pool

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// Run drives health until ctx is done. With Config.Probe set, it probes each
// exit on its own schedule: every ProbeInterval while it is healthy, every
// UnhealthyProbeInterval while it is down, ejected or failing, the first
// time as soon as it is known, and at once when traffic ejects it. It also
// sweeps ejections and panic mode every ProbeInterval, the first at once.
// Intervals carry ProbeJitter. It returns when ctx is done and every probe
// it started has returned. Call it once per pool, usually in its own
// goroutine; a second concurrent call logs an error and returns.
func (p *Pool) Run(ctx context.Context) {
	if !p.running.CompareAndSwap(false, true) {
		p.log.Error("pool Run called while already running")
		return
	}
	defer p.running.Store(false)
	var probes sync.WaitGroup
	defer probes.Wait()
	slots := make(chan struct{}, p.cfg.ProbeConcurrency)
	// The loop looks for exits due a probe a few times per shortest
	// interval, so that a due time is missed by at most a quarter of it.
	tick := p.cfg.ProbeInterval
	if p.cfg.Probe != nil {
		tick = max(min(p.cfg.ProbeInterval, p.cfg.UnhealthyProbeInterval)/4, time.Millisecond)
	}
	var nextSweep time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		p.safely("probe dispatch", func() { p.dispatch(ctx, &probes, slots) })
		if now := p.now(); !now.Before(nextSweep) {
			p.safely("health sweep", p.sweep)
			nextSweep = now.Add(p.jittered(p.cfg.ProbeInterval))
		}
		timer.Reset(p.jittered(tick))
	}
}

// safely runs f, logging a panic instead of dying of it: a loop that calls
// it keeps its cadence.
func (p *Pool) safely(what string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error(what+" panicked", "panic", r, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// dispatch starts a probe of every exit that is due one and not being
// probed, waiting for a free slot (one of ProbeConcurrency) before each.
func (p *Pool) dispatch(ctx context.Context, probes *sync.WaitGroup, slots chan struct{}) {
	if p.cfg.Probe == nil {
		return
	}
	s := p.snap.Load()
	now := p.nowNS()
	for _, m := range s.sorted {
		st := m.st
		if st.nextProbe.Load() > now || st.probing.Load() {
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		st.probing.Store(true)
		probes.Go(func() {
			defer func() {
				st.probing.Store(false)
				<-slots
			}()
			p.safely("probe", func() { p.probeAndApply(ctx, m) })
		})
	}
}

// jittered returns d moved by up to ±ProbeJitter of itself.
func (p *Pool) jittered(d time.Duration) time.Duration {
	f := float64(d)
	f += f * p.cfg.ProbeJitter * (2*p.rng.Float64() - 1)
	return time.Duration(f)
}

// ProbeOnce probes every exit once, whatever its schedule (when Config.Probe
// is set), at most ProbeConcurrency at a time, each within ProbeTimeout,
// applies the results as Run does (Fall failures mark an exit down, Rise
// successes bring it up or end its ejection), then logs ejections that
// ended and updates panic mode. It returns when every probe has returned;
// probes cut short by ctx are not counted.
func (p *Pool) ProbeOnce(ctx context.Context) {
	s := p.snap.Load()
	if p.cfg.Probe != nil && len(s.sorted) > 0 {
		work := make(chan *member)
		var wg sync.WaitGroup
		for range min(p.cfg.ProbeConcurrency, len(s.sorted)) {
			wg.Go(func() {
				for m := range work {
					p.probeAndApply(ctx, m)
				}
			})
		}
	feed:
		for _, m := range s.sorted {
			select {
			case work <- m:
			case <-ctx.Done():
				break feed
			}
		}
		close(work)
		wg.Wait()
	}
	p.sweep()
}

// probeAndApply probes m and applies the result, unless ctx ended meanwhile
// (shutting down is not the exit's fault).
func (p *Pool) probeAndApply(ctx context.Context, m *member) {
	started := p.nowNS()
	err := p.probe(ctx, m)
	if ctx.Err() != nil {
		return
	}
	p.applyProbe(m, err, started)
}

// probe runs Config.Probe for one exit under ProbeTimeout; a panic counts as
// a failure.
func (p *Pool) probe(ctx context.Context, m *member) (err error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ProbeTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("probe panicked", "exit", m.exit.ID, "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("probe panicked: %v", r)
		}
	}()
	return p.cfg.Probe(ctx, m.exit)
}

// applyProbe folds the result of one probe, started at started (unix ns),
// into the exit's rise/fall counters, and schedules its next probe.
func (p *Pool) applyProbe(m *member, err error, started int64) {
	st := m.st
	st.mu.Lock()
	now := p.nowNS()
	changed := false
	if err == nil {
		st.probesOK.Add(1)
		st.probeFails = 0
		if started >= st.ejectedAt {
			st.probeOKs++
		}
		switch {
		case st.probeOKs < p.cfg.Rise:
		case st.down.Load():
			st.down.Store(false)
			st.downReason = ""
			// The probes saw the exit die and come back: an ejection it
			// earned while it was dead is settled too.
			st.settleLocked()
			changed = true
		case st.ejectedUntil.Load() > now:
			// Traffic ejected the exit, and since then it answers the
			// probes again (a restarted exit does within a second or
			// two): active evidence settles the passive verdict, so it
			// is back in seconds rather than at the end of the ejection.
			st.settleLocked()
			changed = true
		}
	} else {
		st.probesFailed.Add(1)
		st.probeOKs = 0
		st.probeFails++
		if !st.down.Load() && st.probeFails >= p.cfg.Fall {
			st.down.Store(true)
			st.downReason = fmt.Sprintf("%d consecutive probe failures: %v", st.probeFails, err)
			changed = true
		}
	}
	interval := p.cfg.ProbeInterval
	if st.down.Load() || st.ejectedUntil.Load() > now || st.probeFails > 0 {
		interval = p.cfg.UnhealthyProbeInterval
	}
	st.nextProbe.Store(now + int64(p.jittered(interval)))
	st.mu.Unlock()
	if changed {
		p.stateChanged(m)
	}
}

// settleLocked ends st's ejection. st.mu must be held.
func (st *exitState) settleLocked() {
	st.ejectedUntil.Store(0)
	st.fails.Store(0)
	// Its latency from before it failed says nothing now.
	st.latency.Store(0)
}

// Report records the outcome of one attempt to set up a tunnel through exit
// id, once per attempt, with the time the set-up took. OK feeds the latency
// EWMA and clears the failure streak; ExitFailed extends it and, at
// ConsecutiveFailures, ejects the exit (unless MaxEjectedPercent of its pool
// is already ejected); DestFailed is neutral. Unknown ids are ignored.
func (p *Pool) Report(id string, o Outcome, setup time.Duration) {
	m := p.snap.Load().byID[id]
	if m == nil {
		return
	}
	switch o {
	case OK:
		m.st.fails.Store(0)
		m.st.observeLatency(setup, p.cfg.LatencyAlpha)
	case ExitFailed:
		if int(m.st.fails.Add(1)) >= p.cfg.ConsecutiveFailures {
			p.eject(m)
		}
	}
}

// eject ejects m if it is not ejected already and its pool's ejection budget
// allows.
func (p *Pool) eject(m *member) {
	s := p.snap.Load()
	v := s.pools[m.exit.Pool]
	if v == nil {
		return
	}
	v.ps.mu.Lock()
	now := p.now()
	nowNS := now.UnixNano()
	st := m.st
	if st.ejectedUntil.Load() > nowNS {
		st.fails.Store(0) // failures of tunnels opened before the ejection
		v.ps.mu.Unlock()
		return
	}
	ejected := 0
	for _, o := range v.members {
		if o.st.ejectedUntil.Load() > nowNS {
			ejected++
		}
	}
	if limit := len(v.members) * p.cfg.MaxEjectedPercent / 100; ejected >= limit {
		v.ps.mu.Unlock()
		p.log.Debug("exit not ejected: pool ejection budget spent", "exit", m.exit.ID, "pool", m.exit.Pool, "ejected", ejected)
		return
	}
	st.mu.Lock()
	n := int(st.fails.Swap(0))
	st.ejections++
	d := min(p.cfg.BaseEjection*time.Duration(st.ejections), p.cfg.MaxEjection)
	st.ejectedUntil.Store(now.Add(d).UnixNano())
	// Only probes started from now on may end the ejection early, and the
	// first is due at once: an exit restarted a moment after it died is
	// seen answering again.
	st.ejectedAt = nowNS
	st.probeOKs = 0
	st.nextProbe.Store(0)
	st.ejectReason = fmt.Sprintf("%d consecutive exit failures (ejection %d, %v)", n, st.ejections, d)
	st.mu.Unlock()
	v.ps.mu.Unlock()
	p.stateChanged(m)
}

// stateChanged logs m's state if it changed and updates its pool's panic mode.
func (p *Pool) stateChanged(m *member) {
	now := p.nowNS()
	p.observe(m, now)
	s := p.snap.Load()
	if v := s.pools[m.exit.Pool]; v != nil {
		p.updatePanic(v.ps, v.members, now)
	}
}

// observe logs one line if m's state differs from the one last logged.
func (p *Pool) observe(m *member, now int64) {
	st := m.st
	st.mu.Lock()
	state, reason := st.stateLocked(now)
	from := st.logged
	st.logged = state
	st.mu.Unlock()
	if state == from {
		return
	}
	args := []any{"exit", m.exit.ID, "pool", m.exit.Pool, "dc", m.exit.DC, "from", from, "to", state}
	if reason != "" {
		args = append(args, "reason", reason)
	}
	if state == StateEjected {
		args = append(args, "until", time.Unix(0, st.ejectedUntil.Load()))
	}
	p.log.Info("exit state changed", args...)
	switch state {
	case StateDown, StateEjected, StateDraining:
		p.left(m.exit.ID)
	}
}

// sweep logs state changes that happen with time (ejections ending) and
// updates every pool's panic mode.
func (p *Pool) sweep() {
	s := p.snap.Load()
	now := p.nowNS()
	for _, m := range s.sorted {
		p.observe(m, now)
	}
	for _, v := range s.pools {
		p.updatePanic(v.ps, v.members, now)
	}
}

// updatePanic sets ps.panic when more than PanicThreshold percent of the
// pool's non-draining exits are down or ejected, logging each transition.
func (p *Pool) updatePanic(ps *poolState, members []*member, now int64) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	total, bad := 0, 0
	for _, m := range members {
		if m.st.draining.Load() {
			continue
		}
		total++
		if m.st.unhealthy(now) {
			bad++
		}
	}
	panicking := total > 0 && bad*100 > total*p.cfg.PanicThreshold
	if ps.panic.Swap(panicking) == panicking {
		return
	}
	if panicking {
		p.log.Warn("pool in panic mode: picking among all exits regardless of health", "pool", ps.name, "unhealthy", bad, "exits", total)
	} else {
		p.log.Info("pool left panic mode", "pool", ps.name, "unhealthy", bad, "exits", total)
	}
}
