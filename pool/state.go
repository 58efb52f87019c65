package pool

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// exitState is the mutable side of an exit. One exitState lives as long as
// its exit is known, across snapshots; the picks read its atomics, health
// and reports write them.
type exitState struct {
	// Read on the pick path.
	draining     atomic.Bool
	down         atomic.Bool   // set by active probes
	ejectedUntil atomic.Int64  // unix nanoseconds; 0 = never ejected
	active       atomic.Int64  // open tunnels
	picked       atomic.Uint64 // Pool.picks when least_conn last chose it; 0 = never
	latency      atomic.Uint64
	// Written by Report.
	fails atomic.Int32 // consecutive ExitFailed reports
	// Written by the probes, read by operators.
	probesOK     atomic.Uint64
	probesFailed atomic.Uint64
	// Run's probe schedule.
	nextProbe atomic.Int64 // unix nanoseconds the next probe is due; 0 = at once
	probing   atomic.Bool  // a probe started by Run is in flight

	mu          sync.Mutex // guards the fields below
	probeFails  int        // consecutive failed probes
	probeOKs    int        // consecutive successful probes
	ejections   int        // passive ejections so far
	ejectedAt   int64      // unix nanoseconds the last ejection started; 0 = never
	downReason  string
	ejectReason string
	logged      string // the state last logged
}

func newExitState() *exitState {
	return &exitState{logged: StateHealthy}
}

// latencyNS returns the EWMA of set-up time in nanoseconds; 0 = no sample.
func (st *exitState) latencyNS() float64 {
	return math.Float64frombits(st.latency.Load())
}

// observeLatency folds one set-up time into the EWMA.
func (st *exitState) observeLatency(d time.Duration, alpha float64) {
	x := float64(d)
	if x <= 0 {
		x = 1 // a sample, however small, is not "no sample"
	}
	for {
		old := st.latency.Load()
		cur := math.Float64frombits(old)
		next := x
		if cur != 0 {
			next = cur + alpha*(x-cur)
		}
		if st.latency.CompareAndSwap(old, math.Float64bits(next)) {
			return
		}
	}
}

// stateLocked returns the state an operator sees at now (unix ns) and why.
// st.mu must be held.
func (st *exitState) stateLocked(now int64) (state, reason string) {
	switch {
	case st.draining.Load():
		return StateDraining, "drain requested"
	case st.down.Load():
		return StateDown, st.downReason
	case st.ejectedUntil.Load() > now:
		return StateEjected, st.ejectReason
	}
	return StateHealthy, ""
}

// unhealthy reports whether the exit is down or ejected at now.
func (st *exitState) unhealthy(now int64) bool {
	return st.down.Load() || st.ejectedUntil.Load() > now
}

// member is one exit in one snapshot: immutable metadata plus the shared state.
type member struct {
	exit       *Exit
	st         *exitState
	idHash     uint64
	egressHash []uint64
	capacity   int64
	weight     int
}

// matches reports whether m satisfies c's filters. c is normalised.
func (m *member) matches(c *Criteria) bool {
	e := m.exit
	return e.Pool == c.Pool &&
		(c.Country == "" || e.Country == c.Country) &&
		(c.City == "" || e.City == c.City) &&
		(c.DC == "" || e.DC == c.DC)
}

// hasEgress reports whether a is one of m's egress IPs (the zero address when
// it has none).
func (m *member) hasEgress(a netip.Addr) bool {
	if len(m.exit.Egress) == 0 {
		return !a.IsValid()
	}
	for _, e := range m.exit.Egress {
		if e == a {
			return true
		}
	}
	return false
}
