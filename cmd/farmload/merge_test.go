//go:build linux

package main

import (
	"testing"
	"time"
)

// TestPhaseMerge checks that slices of a phase add up to the phase: rates
// from the totals, not an average of the slices' rates, and set-up
// percentiles over every slice's tunnels.
func TestPhaseMerge(t *testing.T) {
	ms := time.Millisecond
	a := Phase{Ops: 100, Seconds: 1, Rate: 100, amount: 100, CPU: 0.5, Samples: []string{"a1", "a2", "a3"},
		setups: []time.Duration{1 * ms, 2 * ms, 3 * ms}}
	b := Phase{Ops: 300, Errors: 2, Seconds: 2, Rate: 150, amount: 300, CPU: 1, Samples: []string{"b1", "b2", "b3"},
		setups: []time.Duration{10 * ms, 20 * ms, 30 * ms, 40 * ms, 50 * ms}}
	a.merge(b)
	if a.Ops != 400 || a.Errors != 2 || a.Seconds != 3 || a.CPU != 1.5 {
		t.Errorf("merged ops %d, errors %d, seconds %v, CPU %v; want 400, 2, 3, 1.5", a.Ops, a.Errors, a.Seconds, a.CPU)
	}
	if want := 400.0 / 3; a.Rate != want {
		t.Errorf("merged rate %v, want %v (ops over seconds)", a.Rate, want)
	}
	// 8 set-up times: the median is the 5th smallest, the 99th percentile the largest.
	if a.P50ms != 20 || a.P99ms != 50 {
		t.Errorf("merged p50 %v ms, p99 %v ms; want 20 and 50", a.P50ms, a.P99ms)
	}
	if len(a.Samples) != 5 || a.Samples[3] != "b1" {
		t.Errorf("merged samples %q, want the first 5", a.Samples)
	}

	// Bulk counts megabytes, not ops.
	x := Phase{Ops: 1, Seconds: 1, amount: 500}
	x.merge(Phase{Ops: 1, Seconds: 1, amount: 1500})
	if x.Rate != 1000 {
		t.Errorf("merged bulk rate %v MB/s, want 1000", x.Rate)
	}
}
