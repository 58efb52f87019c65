package pool

import (
	"errors"
	"net/netip"
	"time"
)

// ErrNoExit is returned (wrapped with what was asked) by [Pool.Pick] when no
// exit matches the criteria or none of the matching ones can take a tunnel.
var ErrNoExit = errors.New("no exit available")

// ErrUnknownExit is returned (wrapped with the id) for an exit id the pool does
// not know.
var ErrUnknownExit = errors.New("unknown exit")

// Exit describes one exit node: a forward proxy with zero or more egress IPs.
type Exit struct {
	// ID identifies the exit across the farm. Required.
	ID string
	// DC is the data centre the exit runs in, lower-case.
	DC string
	// Pool is the IP pool (the customer's "zone"), lower-case. Required.
	Pool string
	// Country is the ISO 3166 alpha-2 code of the egress IPs, upper-case.
	Country string
	// City is the city of the egress IPs, lower-case.
	City string
	// Egress lists the exit's public egress IPs; empty means the upstream picks
	// its own.
	Egress []netip.Addr
	// Weight is the exit's share for the weighted policy; 0 means 1.
	Weight int
	// Capacity is the maximum number of concurrent tunnels; 0 means unlimited.
	Capacity int
	// Addr is opaque to the pool: how the gateway reaches this exit (a URL).
	Addr string
}

// Outcome is the result of one attempt to set up a tunnel through an exit.
type Outcome int

const (
	// OK means the tunnel was set up.
	OK Outcome = iota
	// ExitFailed means the exit could not be reached or failed to tunnel; it
	// counts towards passive ejection.
	ExitFailed
	// DestFailed means the destination was at fault (refused, unreachable,
	// forbidden, a 5xx from the origin); it is neutral for the exit's health.
	DestFailed
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case ExitFailed:
		return "exit_failed"
	case DestFailed:
		return "dest_failed"
	}
	return "unknown"
}

// States an operator reads in [ExitStatus.State].
const (
	StateHealthy  = "healthy"
	StateDown     = "down"
	StateEjected  = "ejected"
	StateDraining = "draining"
)

// ExitStatus is what an operator sees of one exit (the admin API's JSON).
type ExitStatus struct {
	ID      string `json:"id"`
	DC      string `json:"dc"`
	Pool    string `json:"pool"`
	Country string `json:"country"`
	City    string `json:"city"`
	// State is one of healthy, down, ejected, draining.
	State string `json:"state"`
	// Reason says why the exit is not healthy; empty when it is.
	Reason string `json:"reason"`
	// EjectedUntil is when a passive ejection ends; zero when not ejected.
	EjectedUntil  time.Time `json:"ejected_until,omitzero"`
	ActiveTunnels int       `json:"active_tunnels"`
	// LatencyMS is the EWMA of tunnel set-up time in milliseconds; 0 before
	// the first sample.
	LatencyMS float64 `json:"latency_ms"`
	// Ejections counts passive ejections since the exit joined.
	Ejections int `json:"ejections"`
	// ProbesOK and ProbesFailed count active probe results since the exit
	// joined.
	ProbesOK     uint64       `json:"probes_ok"`
	ProbesFailed uint64       `json:"probes_failed"`
	Egress       []netip.Addr `json:"egress"`
	Weight       int          `json:"weight"`
}
