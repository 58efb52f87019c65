package pool

import (
	"context"
	"fmt"
	"time"
)

// Policy names accepted in [Config.DefaultPolicy] and [Config.Policies].
const (
	PolicyRoundRobin   = "round_robin"
	PolicyWeighted     = "weighted"
	PolicyLeastConn    = "least_conn"
	PolicyLeastLatency = "least_latency"
	PolicyRandom       = "random"
)

// Config configures a [Pool]. Start from [DefaultConfig]; zero durations and
// counts are not replaced by defaults, they fail [Config.Validate].
type Config struct {
	// LocalDC is this gateway's data centre; exits there are preferred.
	// Default "" (no preference).
	LocalDC string

	// DefaultPolicy is the selection policy of pools not named in Policies,
	// for picks without a sticky session. Default "least_conn": the fewest
	// open tunnels, ties going to the exit picked longest ago, so that light
	// (sequential) traffic rotates over every exit. The others:
	// "round_robin" takes turns; "weighted" takes turns in proportion to
	// Exit.Weight; "random" is uniform; "least_latency" prefers the exit
	// with the lowest set-up time EWMA times its open tunnels plus one,
	// which piles light traffic onto the exit that happened to be fastest
	// (one slow set-up through another is enough), so it is opt-in.
	DefaultPolicy string
	// Policies maps a pool name to its selection policy. Default nil.
	Policies map[string]string

	// Probe is the active health check of one exit: it returns nil when the
	// exit can serve. A gateway checks its own exits by default (the exit's
	// health answer over the gateway token; a TCP connect for third-party
	// upstreams; a request through the exit when the operator names a probe
	// URL). It is called by Run's workers, at most ProbeConcurrency at once,
	// each with a context that expires after ProbeTimeout. Default nil: no
	// active health, and ejections end only with their time.
	Probe func(ctx context.Context, e *Exit) error
	// ProbeInterval is the time between two probes of a healthy exit,
	// before jitter. Default 2s.
	ProbeInterval time.Duration
	// UnhealthyProbeInterval is the time between two probes of an exit that
	// is down, ejected, or failed its last probe, before jitter. It is what
	// brings a restarted exit back quickly: within about Rise times this
	// (1s) of the moment it answers again, and it confirms a dead one (Fall
	// failures) within about ProbeInterval plus Fall-1 times this (3s).
	// Default 500ms.
	UnhealthyProbeInterval time.Duration
	// ProbeJitter is the fraction of an interval by which each probe (and
	// each sweep of ejections) is randomly moved earlier or later, in
	// [0, 1). Default 0.1.
	ProbeJitter float64
	// ProbeTimeout bounds one probe. Default 1s.
	ProbeTimeout time.Duration
	// ProbeConcurrency bounds the probes in flight at once. Default 16.
	ProbeConcurrency int
	// Fall is the number of consecutive failed probes that mark an exit down.
	// Default 3.
	Fall int
	// Rise is the number of consecutive successful probes that bring a down
	// exit back up, and that end a passive ejection before its time (only
	// probes started after the ejection count: the exit answers again, as
	// a restarted exit does). Default 2.
	Rise int

	// ConsecutiveFailures is the number of consecutive ExitFailed reports
	// that eject an exit (passive health). Default 5.
	ConsecutiveFailures int
	// BaseEjection is the ejection time, multiplied by the number of times
	// the exit has been ejected. Default 30s.
	BaseEjection time.Duration
	// MaxEjection caps one ejection. Default 5m.
	MaxEjection time.Duration
	// MaxEjectedPercent is the largest share of a pool's exits, in percent,
	// that may be ejected at once. Default 50.
	MaxEjectedPercent int
	// PanicThreshold is the share of a pool's exits, in percent, that must be
	// unhealthy (down or ejected) before the pool enters panic mode and picks
	// among all of its non-draining exits regardless of health. Panic starts
	// when strictly more than this share is unhealthy. Default 50.
	PanicThreshold int

	// LatencyAlpha is the weight of a new set-up time sample in the EWMA the
	// least_latency policy compares, in (0, 1]. Default 0.3.
	LatencyAlpha float64

	// SessionTTL is the sticky idle lifetime used when Criteria.SessTime is
	// zero. Default 10m.
	SessionTTL time.Duration
	// Sessions stores sticky bindings. Default nil: a [MemorySessions] made
	// by [New].
	Sessions SessionStore

	// Now is the clock. Default nil: time.Now.
	Now func() time.Time
	// Seed seeds the pool's random source (policy picks, egress rotation,
	// probe jitter). Default 0: a random seed.
	Seed uint64
}

// DefaultConfig returns the configuration described by the field comments.
func DefaultConfig() Config {
	return Config{
		DefaultPolicy:          PolicyLeastConn,
		ProbeInterval:          2 * time.Second,
		UnhealthyProbeInterval: 500 * time.Millisecond,
		ProbeJitter:            0.1,
		ProbeTimeout:           time.Second,
		ProbeConcurrency:       16,
		Fall:                   3,
		Rise:                   2,
		ConsecutiveFailures:    5,
		BaseEjection:           30 * time.Second,
		MaxEjection:            5 * time.Minute,
		MaxEjectedPercent:      50,
		PanicThreshold:         50,
		LatencyAlpha:           0.3,
		SessionTTL:             10 * time.Minute,
	}
}

func validPolicy(name string) bool {
	switch name {
	case PolicyRoundRobin, PolicyWeighted, PolicyLeastConn, PolicyLeastLatency, PolicyRandom:
		return true
	}
	return false
}

// Validate reports the first invalid field, by name.
func (c Config) Validate() error {
	if !validPolicy(c.DefaultPolicy) {
		return fmt.Errorf("pool config: DefaultPolicy %q: unknown policy", c.DefaultPolicy)
	}
	for pool, pol := range c.Policies {
		if !validPolicy(pol) {
			return fmt.Errorf("pool config: Policies[%q] %q: unknown policy", pool, pol)
		}
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"ProbeInterval", c.ProbeInterval},
		{"UnhealthyProbeInterval", c.UnhealthyProbeInterval},
		{"ProbeTimeout", c.ProbeTimeout},
		{"BaseEjection", c.BaseEjection},
		{"MaxEjection", c.MaxEjection},
		{"SessionTTL", c.SessionTTL},
	}
	for _, f := range positive {
		if f.d <= 0 {
			return fmt.Errorf("pool config: %s %v: must be positive", f.name, f.d)
		}
	}
	if c.MaxEjection < c.BaseEjection {
		return fmt.Errorf("pool config: MaxEjection %v: must be at least BaseEjection %v", c.MaxEjection, c.BaseEjection)
	}
	counts := []struct {
		name string
		n    int
	}{
		{"ProbeConcurrency", c.ProbeConcurrency},
		{"Fall", c.Fall},
		{"Rise", c.Rise},
		{"ConsecutiveFailures", c.ConsecutiveFailures},
	}
	for _, f := range counts {
		if f.n <= 0 {
			return fmt.Errorf("pool config: %s %d: must be positive", f.name, f.n)
		}
	}
	if c.ProbeJitter < 0 || c.ProbeJitter >= 1 {
		return fmt.Errorf("pool config: ProbeJitter %v: must be in [0, 1)", c.ProbeJitter)
	}
	if c.MaxEjectedPercent < 0 || c.MaxEjectedPercent > 100 {
		return fmt.Errorf("pool config: MaxEjectedPercent %d: must be in [0, 100]", c.MaxEjectedPercent)
	}
	if c.PanicThreshold < 0 || c.PanicThreshold > 100 {
		return fmt.Errorf("pool config: PanicThreshold %d: must be in [0, 100]", c.PanicThreshold)
	}
	if !(c.LatencyAlpha > 0 && c.LatencyAlpha <= 1) {
		return fmt.Errorf("pool config: LatencyAlpha %v: must be in (0, 1]", c.LatencyAlpha)
	}
	return nil
}
