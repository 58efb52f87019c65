package pool_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmgate/farmgate/pool"
)

// scriptedProbe fails exit ids listed in fail; the test edits the set between
// rounds.
type scriptedProbe struct {
	mu   sync.Mutex // guards fail
	fail map[string]bool
}

func (s *scriptedProbe) set(id string, failing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail == nil {
		s.fail = make(map[string]bool)
	}
	s.fail[id] = failing
}

func (s *scriptedProbe) probe(_ context.Context, e *pool.Exit) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail[e.ID] {
		return errors.New("connection refused")
	}
	return nil
}

func TestActiveHealthRiseFall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		probes string // one result per round: f = fail, o = ok
		states string // state after each round: h = healthy, d = down
	}{
		{name: "three failures mark down", probes: "fff", states: "hhd"},
		{name: "a single failure does not flap", probes: "fofofo", states: "hhhhhh"},
		{name: "two failures then ok", probes: "ffoff", states: "hhhhh"},
		{name: "two successes bring it up", probes: "fffoo", states: "hhddh"},
		{name: "one success is not enough", probes: "fffofoo", states: "hhddddh"},
		{name: "stays down while failing", probes: "ffffff", states: "hhdddd"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sp := &scriptedProbe{}
			f := newPool(t, func(c *pool.Config) { c.Probe = sp.probe }, mkExits(4, "e", "eu", "DE")...)
			changes := 0
			prev := byte('h')
			for i := range len(tc.probes) {
				sp.set("e-0000", tc.probes[i] == 'f')
				f.p.ProbeOnce(t.Context())
				want := map[byte]string{'h': pool.StateHealthy, 'd': pool.StateDown}[tc.states[i]]
				st := stateOf(t, f.p, "e-0000")
				if st.State != want {
					t.Fatalf("after round %d (%s): state %s, want %s", i+1, tc.probes[:i+1], st.State, want)
				}
				if want == pool.StateDown && !strings.Contains(st.Reason, "probe") {
					t.Errorf("down reason %q does not mention the probe", st.Reason)
				}
				picked := pickN(t, f.p, pool.Criteria{Pool: "resi"}, 200)
				if down := picked["e-0000"] > 0; down != (want == pool.StateHealthy) {
					t.Errorf("after round %d: e-0000 picked %d times in state %s", i+1, picked["e-0000"], want)
				}
				if tc.states[i] != prev {
					changes++
					prev = tc.states[i]
				}
			}
			if got := f.logs.Count("exit state changed", "exit=e-0000"); got != changes {
				t.Errorf("%d state-change log lines, want %d:\n%s", got, changes, f.logs)
			}
		})
	}
}

func TestProbeTimeoutCountsAsFailure(t *testing.T) {
	t.Parallel()
	block := func(ctx context.Context, e *pool.Exit) error {
		<-ctx.Done()
		return ctx.Err()
	}
	f := newPool(t, func(c *pool.Config) {
		c.Probe = block
		c.ProbeTimeout = 5 * time.Millisecond
	}, mkExits(2, "e", "eu", "DE")...)
	for range 3 {
		f.p.ProbeOnce(t.Context())
	}
	for _, st := range f.p.Exits() {
		if st.State != pool.StateDown || !strings.Contains(st.Reason, "deadline") {
			t.Errorf("%s: state %s (%s), want down by deadline", st.ID, st.State, st.Reason)
		}
	}
}

func TestProbePanicCountsAsFailure(t *testing.T) {
	t.Parallel()
	f := newPool(t, func(c *pool.Config) {
		c.Probe = func(context.Context, *pool.Exit) error { panic("boom") }
	}, mkExits(1, "e", "eu", "DE")...)
	for range 3 {
		f.p.ProbeOnce(t.Context())
	}
	if st := stateOf(t, f.p, "e-0000"); st.State != pool.StateDown {
		t.Errorf("state %s, want down", st.State)
	}
	if f.logs.Count(`msg="probe panicked"`) != 3 {
		t.Errorf("want 3 panic log lines:\n%s", f.logs)
	}
}

func TestProbeConcurrencyBounded(t *testing.T) {
	t.Parallel()
	var inFlight, peak, calls atomic.Int32
	probe := func(ctx context.Context, e *pool.Exit) error {
		calls.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		return nil
	}
	f := newPool(t, func(c *pool.Config) {
		c.Probe = probe
		c.ProbeConcurrency = 4
	}, mkExits(40, "e", "eu", "DE")...)
	f.p.ProbeOnce(t.Context())
	if calls.Load() != 40 {
		t.Errorf("%d probes, want 40 (one per exit)", calls.Load())
	}
	if p := peak.Load(); p > 4 || p < 2 {
		t.Errorf("peak concurrency %d, want 2..4", p)
	}
}

func TestPassiveEjection(t *testing.T) {
	t.Parallel()
	const (
		F = pool.ExitFailed
		D = pool.DestFailed
		O = pool.OK
	)
	tests := []struct {
		name    string
		reports []pool.Outcome
		want    string
	}{
		{name: "five exit failures eject", reports: []pool.Outcome{F, F, F, F, F}, want: pool.StateEjected},
		{name: "four are not enough", reports: []pool.Outcome{F, F, F, F}, want: pool.StateHealthy},
		{name: "a success resets the streak", reports: []pool.Outcome{F, F, F, F, O, F, F, F, F}, want: pool.StateHealthy},
		{name: "destination failures are neutral", reports: []pool.Outcome{D, D, D, D, D, D, D, D, D, D}, want: pool.StateHealthy},
		{name: "destination failures do not reset the streak", reports: []pool.Outcome{F, F, D, F, F, D, F}, want: pool.StateEjected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newPool(t, func(c *pool.Config) { c.DefaultPolicy = pool.PolicyRandom }, mkExits(4, "e", "eu", "DE")...)
			for _, o := range tc.reports {
				f.p.Report("e-0000", o, 50*time.Millisecond)
			}
			st := stateOf(t, f.p, "e-0000")
			if st.State != tc.want {
				t.Fatalf("state %s (%s), want %s", st.State, st.Reason, tc.want)
			}
			picked := pickN(t, f.p, pool.Criteria{Pool: "resi"}, 200)
			if (picked["e-0000"] > 0) != (tc.want == pool.StateHealthy) {
				t.Errorf("e-0000 picked %d times in state %s", picked["e-0000"], st.State)
			}
		})
	}
}

func TestEjectionBackoff(t *testing.T) {
	t.Parallel()
	f := newPool(t, nil, mkExits(4, "e", "eu", "DE")...)
	eject := func() {
		for range 5 {
			f.p.Report("e-0001", pool.ExitFailed, 0)
		}
	}
	for i, want := range []time.Duration{
		30 * time.Second, 60 * time.Second, 90 * time.Second, 120 * time.Second, 150 * time.Second,
		180 * time.Second, 210 * time.Second, 240 * time.Second, 270 * time.Second, 300 * time.Second,
		300 * time.Second, 300 * time.Second,
	} {
		eject()
		st := stateOf(t, f.p, "e-0001")
		if st.State != pool.StateEjected || st.Ejections != i+1 {
			t.Fatalf("ejection %d: state %s, ejections %d", i+1, st.State, st.Ejections)
		}
		if got := st.EjectedUntil.Sub(f.clock.Now()); got != want {
			t.Fatalf("ejection %d lasts %v, want %v", i+1, got, want)
		}
		// Failures during the ejection (tunnels opened before it) do not
		// extend it.
		eject()
		if st2 := stateOf(t, f.p, "e-0001"); st2.EjectedUntil != st.EjectedUntil {
			t.Fatalf("ejection %d extended to %v", i+1, st2.EjectedUntil)
		}
		f.clock.Advance(want - time.Millisecond)
		if st := stateOf(t, f.p, "e-0001"); st.State != pool.StateEjected {
			t.Fatalf("ejection %d ended early", i+1)
		}
		f.clock.Advance(time.Millisecond)
		f.p.ProbeOnce(t.Context()) // logs the end of the ejection
		if st := stateOf(t, f.p, "e-0001"); st.State != pool.StateHealthy || !st.EjectedUntil.IsZero() {
			t.Fatalf("after ejection %d: state %s until %v", i+1, st.State, st.EjectedUntil)
		}
	}
	if n := f.logs.Count("exit state changed", "exit=e-0001", "to=ejected"); n != 12 {
		t.Errorf("%d ejection log lines, want 12", n)
	}
	if n := f.logs.Count("exit state changed", "exit=e-0001", "from=ejected", "to=healthy"); n != 12 {
		t.Errorf("%d end-of-ejection log lines, want 12", n)
	}
}

func TestMaxEjectedPercent(t *testing.T) {
	t.Parallel()
	tests := []struct {
		exits, pct, want int
	}{
		{exits: 4, pct: 50, want: 2},
		{exits: 5, pct: 50, want: 2},
		{exits: 10, pct: 30, want: 3},
		{exits: 1, pct: 50, want: 0},
		{exits: 3, pct: 100, want: 3},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d exits %d%%", tc.exits, tc.pct), func(t *testing.T) {
			t.Parallel()
			exits := mkExits(tc.exits, "e", "eu", "DE")
			f := newPool(t, func(c *pool.Config) { c.MaxEjectedPercent = tc.pct }, exits...)
			for _, e := range exits {
				for range 5 {
					f.p.Report(e.ID, pool.ExitFailed, 0)
				}
			}
			ejected := 0
			for _, st := range f.p.Exits() {
				if st.State == pool.StateEjected {
					ejected++
				}
			}
			if ejected != tc.want {
				t.Errorf("%d ejected, want %d", ejected, tc.want)
			}
		})
	}
}

func TestPanicMode(t *testing.T) {
	t.Parallel()
	sp := &scriptedProbe{}
	exits := mkExits(4, "e", "eu", "DE")
	exits = append(exits, mkExits(1, "other", "eu", "DE")...)
	exits[4].Pool = "other"
	f := newPool(t, func(c *pool.Config) { c.Probe = sp.probe }, exits...)
	all := pool.Criteria{Pool: "resi"}
	round := func(n int) {
		for range n {
			f.p.ProbeOnce(t.Context())
		}
	}

	// Two of four down (50%): not more than half, healthy ones only.
	sp.set("e-0000", true)
	sp.set("e-0001", true)
	round(3)
	if got := pickN(t, f.p, all, 400); len(got) != 2 || got["e-0000"]+got["e-0001"] != 0 {
		t.Fatalf("two down: picked %v, want only e-0002 and e-0003", got)
	}

	// Three of four down: panic, every exit is picked.
	sp.set("e-0002", true)
	round(3)
	if got := pickN(t, f.p, all, 400); len(got) != 4 {
		t.Fatalf("panic: picked %v, want all four", got)
	}
	// A draining exit stays out even in panic mode.
	if err := f.p.Drain("e-0003", true); err != nil {
		t.Fatal(err)
	}
	if got := pickN(t, f.p, all, 400); len(got) != 3 || got["e-0003"] != 0 {
		t.Fatalf("panic with e-0003 draining: picked %v", got)
	}
	if err := f.p.Drain("e-0003", false); err != nil {
		t.Fatal(err)
	}
	// Another pool is not affected.
	if _, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "other"}); err != nil {
		t.Fatalf("other pool: %v", err)
	}
	round(2) // more rounds in panic log nothing new

	// Recovery: two back up leaves panic.
	sp.set("e-0000", false)
	sp.set("e-0001", false)
	round(2)
	if got := pickN(t, f.p, all, 400); len(got) != 3 || got["e-0002"] != 0 {
		t.Fatalf("after recovery: picked %v, want e-0000, e-0001, e-0003", got)
	}
	if n := f.logs.Count("panic mode", "pool=resi"); n != 2 {
		t.Errorf("%d panic-mode log lines, want 2 (enter, leave):\n%s", n, f.logs)
	}
	if n := f.logs.Count("panic mode", "pool=other"); n != 0 {
		t.Errorf("pool other logged panic")
	}
}

func TestDrainUnknownExit(t *testing.T) {
	t.Parallel()
	f := newPool(t, nil, mkExits(1, "e", "eu", "DE")...)
	if err := f.p.Drain("nope", true); !errors.Is(err, pool.ErrUnknownExit) {
		t.Errorf("Drain(nope) = %v, want ErrUnknownExit", err)
	}
	if err := f.p.Drain("e-0000", true); err != nil {
		t.Fatal(err)
	}
	if st := stateOf(t, f.p, "e-0000"); st.State != pool.StateDraining {
		t.Errorf("state %s, want draining", st.State)
	}
	// Draining survives an update of the exit's metadata.
	e := mkExits(1, "e", "eu", "DE")[0]
	e.Weight = 3
	f.p.Upsert(e)
	if st := stateOf(t, f.p, "e-0000"); st.State != pool.StateDraining || st.Weight != 3 {
		t.Errorf("after Upsert: state %s weight %d, want draining 3", st.State, st.Weight)
	}
	if n := f.logs.Count("exit state changed", "to=draining"); n != 1 {
		t.Errorf("%d draining log lines, want 1", n)
	}
}

func TestRunProbesUntilCancelled(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	p, err := pool.New(func() pool.Config {
		c := pool.DefaultConfig()
		c.ProbeInterval = time.Millisecond
		c.Probe = func(context.Context, *pool.Exit) error { calls.Add(1); return nil }
		return c
	}(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p.Set(mkExits(3, "e", "eu", "DE"))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() < 9 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d probes in 5s", calls.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// A second Run while the first runs returns at once.
	second := make(chan struct{})
	go func() {
		defer close(second)
		p.Run(ctx)
	}()
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("second Run did not return")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestProbesCutByShutdownAreNotCounted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	f := newPool(t, func(c *pool.Config) {
		c.Probe = func(pctx context.Context, e *pool.Exit) error {
			cancel()
			<-pctx.Done()
			return pctx.Err()
		}
	}, mkExits(2, "e", "eu", "DE")...)
	for range 5 {
		f.p.ProbeOnce(ctx)
	}
	for _, st := range f.p.Exits() {
		if st.State != pool.StateHealthy {
			t.Errorf("%s: %s after probes cut by shutdown, want healthy", st.ID, st.State)
		}
	}
}

// An ejected exit is back as soon as Rise probes started after its
// ejection pass (a restarted exit answers again), not at the end of the
// ejection; a dead one stays out until it answers again.
func TestProbeRecoverySettlesEjection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		probes string // rounds after the ejection: f = fail, o = ok
		want   string
	}{
		{name: "answers again at once", probes: "oo", want: pool.StateHealthy},
		{name: "one pass is not enough", probes: "o", want: pool.StateEjected},
		{name: "passes must be consecutive", probes: "ofo", want: pool.StateEjected},
		{name: "died and came back", probes: "fffoo", want: pool.StateHealthy},
		{name: "died and still down", probes: "fffo", want: pool.StateDown},
		{name: "dead, not yet down", probes: "ff", want: pool.StateEjected},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sp := &scriptedProbe{}
			f := newPool(t, func(c *pool.Config) { c.Probe = sp.probe }, mkExits(4, "e", "eu", "DE")...)
			f.p.ProbeOnce(t.Context()) // passes before the ejection do not count
			f.p.ProbeOnce(t.Context())
			for range 5 {
				f.p.Report("e-0000", pool.ExitFailed, 10*time.Millisecond)
			}
			if st := stateOf(t, f.p, "e-0000"); st.State != pool.StateEjected {
				t.Fatalf("state %s after 5 exit failures, want ejected", st.State)
			}
			for _, r := range tc.probes {
				sp.set("e-0000", r == 'f')
				f.p.ProbeOnce(t.Context())
			}
			st := stateOf(t, f.p, "e-0000")
			if st.State != tc.want {
				t.Fatalf("state %s (%s), want %s", st.State, st.Reason, tc.want)
			}
			picked := pickN(t, f.p, pool.Criteria{Pool: "resi"}, 40)
			if (picked["e-0000"] > 0) != (tc.want == pool.StateHealthy) {
				t.Errorf("e-0000 picked %d times in state %s", picked["e-0000"], st.State)
			}
			if tc.want == pool.StateHealthy {
				if n := f.logs.Count("exit state changed", "exit=e-0000", "to=healthy"); n != 1 {
					t.Errorf("%d log lines of e-0000 back to healthy, want 1:\n%s", n, f.logs)
				}
			}
		})
	}
}

// A probe that started before the ejection says nothing about the exit
// after it: it does not count towards ending the ejection.
func TestProbeStartedBeforeEjectionDoesNotCount(t *testing.T) {
	t.Parallel()
	inProbe, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f := newPool(t, func(c *pool.Config) {
		c.Probe = func(ctx context.Context, e *pool.Exit) error {
			if e.ID == "e-0000" {
				once.Do(func() {
					close(inProbe)
					<-release
				})
			}
			return nil
		}
	}, mkExits(4, "e", "eu", "DE")...)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.p.ProbeOnce(context.Background())
	}()
	<-inProbe
	f.clock.Advance(time.Millisecond)
	for range 5 {
		f.p.Report("e-0000", pool.ExitFailed, 0)
	}
	close(release)
	<-done
	f.p.ProbeOnce(t.Context())
	if st := stateOf(t, f.p, "e-0000"); st.State != pool.StateEjected {
		t.Fatalf("after one probe begun before the ejection and one after: state %s, want ejected", st.State)
	}
	f.p.ProbeOnce(t.Context())
	if st := stateOf(t, f.p, "e-0000"); st.State != pool.StateHealthy {
		t.Fatalf("after two probes begun after the ejection: state %s, want healthy", st.State)
	}
}

// Run probes each exit on its own schedule: healthy ones every
// ProbeInterval, failing, down or ejected ones every
// UnhealthyProbeInterval, and an exit traffic ejects at once. The clock is
// the pool's fake one, so an exit is due exactly when the test says.
func TestRunSchedulesProbesByHealth(t *testing.T) {
	t.Parallel()
	sp := &scriptedProbe{}
	f := newPool(t, func(c *pool.Config) {
		c.Probe = sp.probe
		c.ProbeInterval = time.Hour
		c.UnhealthyProbeInterval = 20 * time.Millisecond // ±10%: due after 25ms
	}, mkExits(4, "e", "eu", "DE")...)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	probes := func(id string) int {
		st := stateOf(t, f.p, id)
		return int(st.ProbesOK + st.ProbesFailed)
	}
	// waitFor waits until id had n probes and is in state.
	waitFor := func(id string, n int, state string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for probes(id) < n || stateOf(t, f.p, id).State != state {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d probes, state %s; want %d, %s", id, probes(id), stateOf(t, f.p, id).State, n, state)
			}
			time.Sleep(time.Millisecond)
		}
	}
	others := func(want int, ids ...string) {
		t.Helper()
		for _, id := range ids {
			if n := probes(id); n != want {
				t.Errorf("%s probed %d times, want %d (healthy, not due)", id, n, want)
			}
		}
	}

	for _, e := range mkExits(4, "e", "eu", "DE") {
		waitFor(e.ID, 1, pool.StateHealthy) // known: probed at once
	}
	sp.set("e-0000", true)
	f.clock.Advance(2 * time.Hour)
	for _, e := range mkExits(4, "e", "eu", "DE") {
		waitFor(e.ID, 2, pool.StateHealthy)
	}
	// e-0000 failed once: probed every 20ms until down (Fall 3).
	f.clock.Advance(25 * time.Millisecond)
	waitFor("e-0000", 3, pool.StateHealthy)
	f.clock.Advance(25 * time.Millisecond)
	waitFor("e-0000", 4, pool.StateDown)
	// It answers again: up after Rise (2) probes 20ms apart.
	sp.set("e-0000", false)
	f.clock.Advance(25 * time.Millisecond)
	waitFor("e-0000", 5, pool.StateDown)
	f.clock.Advance(25 * time.Millisecond)
	waitFor("e-0000", 6, pool.StateHealthy)
	others(2, "e-0001", "e-0002", "e-0003")

	// Traffic ejects e-0001 while it passes probes: probed at once, then
	// 20ms later, and back long before its 30s ejection ends.
	for range 5 {
		f.p.Report("e-0001", pool.ExitFailed, 0)
	}
	waitFor("e-0001", 3, pool.StateEjected)
	f.clock.Advance(25 * time.Millisecond)
	waitFor("e-0001", 4, pool.StateHealthy)
	others(2, "e-0002", "e-0003")
}
