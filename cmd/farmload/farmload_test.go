//go:build linux

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestShortLoad runs the whole tool once, briefly, against a real farm and
// checks that every figure came out and no op failed.
func TestShortLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds farmgate and starts a 5-process farm for ~15s; runs without -short (and under CI=true)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := options{
		Runs: 1, Duration: 300 * time.Millisecond, Concurrency: 4, MaxOps: 1_000_000,
		BulkStreams: 2, BulkSize: 4 << 20, IdleTunnels: 50, Only: allPhases, Slices: 2,
	}
	var out, log bytes.Buffer
	res, err := run(ctx, opts, &out, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", out.String())
	want := []string{"tunnels/s", "requests/s", "bulk MB/s", "set-up p50 ms", "set-up p99 ms", "KiB/idle tunnel", "fds/idle tunnel"}
	got := map[string]Row{}
	for _, r := range res.Median {
		got[r.Metric] = r
	}
	for _, name := range want {
		r, ok := got[name]
		if !ok {
			t.Errorf("%s: missing from the result", name)
			continue
		}
		if r.Direct <= 0 || r.Gateway <= 0 || r.Ratio <= 0 {
			t.Errorf("%s: direct %v, gateway %v, ratio %v; want all > 0", name, r.Direct, r.Gateway, r.Ratio)
		}
	}
	for _, r := range res.Median {
		if strings.Contains(r.Metric, "CPU") && (r.Direct < 0 || r.Gateway < 0) {
			t.Errorf("%s: direct %v, gateway %v; want ≥ 0", r.Metric, r.Direct, r.Gateway)
		}
	}
	for phase, n := range res.Errors {
		if n != 0 {
			t.Errorf("%s: %d failed ops, want 0", phase, n)
		}
	}
	if len(res.Errors) != 2*len(allPhases) {
		t.Errorf("error counts cover %v, want every phase in both modes", res.Errors)
	}
}

// TestShortLoadWithReference runs the tunnels and idle phases with HAProxy
// as the reference proxy in front of the same exits and checks its column
// came out.
func TestShortLoadWithReference(t *testing.T) {
	if testing.Short() {
		t.Skip("builds farmgate and starts a 6-process farm")
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy is required under CI=true (.ci/run installs it)")
		}
		t.Skip("haproxy not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := options{
		Runs: 1, Duration: 300 * time.Millisecond, Concurrency: 4, MaxOps: 1_000_000,
		BulkStreams: 1, BulkSize: 1 << 20, IdleTunnels: 50, Only: []string{"idle", "tunnels"}, Reference: refHAProxy,
	}
	var out, log bytes.Buffer
	res, err := run(ctx, opts, &out, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", out.String())
	for _, r := range res.Median {
		if (r.Metric == "tunnels/s" || r.Metric == "KiB/idle tunnel") && (r.Reference <= 0 || r.RefRatio <= 0) {
			t.Errorf("%s: reference %v, ratio %v; want both > 0", r.Metric, r.Reference, r.RefRatio)
		}
	}
	if !strings.Contains(out.String(), "reference") {
		t.Errorf("the table has no reference column:\n%s", out.String())
	}
	for phase, n := range res.Errors {
		if n != 0 {
			t.Errorf("%s: %d failed ops, want 0", phase, n)
		}
	}
	if n := len(res.Errors); n != 6 {
		t.Errorf("error counts cover %v, want 2 phases in 3 modes", res.Errors)
	}
}
