package pool

import (
	"fmt"
	"net/netip"
	"time"
)

// TunnelOpened counts a tunnel opened through exit id (least_conn, Capacity).
// Unknown ids are ignored.
func (p *Pool) TunnelOpened(id string) {
	if m := p.snap.Load().byID[id]; m != nil {
		m.st.active.Add(1)
	}
}

// TunnelClosed counts a tunnel through exit id closed. Unknown ids are
// ignored; the count never goes below zero.
func (p *Pool) TunnelClosed(id string) {
	m := p.snap.Load().byID[id]
	if m == nil {
		return
	}
	for {
		n := m.st.active.Load()
		if n <= 0 || m.st.active.CompareAndSwap(n, n-1) {
			return
		}
	}
}

// Drain stops (draining true) or resumes new tunnels through exit id; live
// tunnels are not touched. It returns an error wrapping ErrUnknownExit for an
// id the pool does not know.
func (p *Pool) Drain(id string, draining bool) error {
	m := p.snap.Load().byID[id]
	if m == nil {
		return fmt.Errorf("draining exit %s: %w", id, ErrUnknownExit)
	}
	m.st.draining.Store(draining)
	p.stateChanged(m)
	return nil
}

// Exits returns the status of every exit, sorted by id.
func (p *Pool) Exits() []ExitStatus {
	s := p.snap.Load()
	now := p.nowNS()
	out := make([]ExitStatus, 0, len(s.sorted))
	for _, m := range s.sorted {
		e, st := m.exit, m.st
		st.mu.Lock()
		state, reason := st.stateLocked(now)
		ejections := st.ejections
		st.mu.Unlock()
		es := ExitStatus{
			ID:            e.ID,
			DC:            e.DC,
			Pool:          e.Pool,
			Country:       e.Country,
			City:          e.City,
			State:         state,
			Reason:        reason,
			ActiveTunnels: int(st.active.Load()),
			LatencyMS:     st.latencyNS() / float64(time.Millisecond),
			Ejections:     ejections,
			ProbesOK:      st.probesOK.Load(),
			ProbesFailed:  st.probesFailed.Load(),
			Egress:        append([]netip.Addr{}, e.Egress...),
			Weight:        max(1, e.Weight),
		}
		if u := st.ejectedUntil.Load(); u > now {
			es.EjectedUntil = time.Unix(0, u)
		}
		out = append(out, es)
	}
	return out
}
