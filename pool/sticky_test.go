package pool_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmgate/farmgate/pool"
)

func TestRendezvousMovement(t *testing.T) {
	t.Parallel()
	const sessions = 10_000
	ids := make([]string, 100)
	for i := range ids {
		ids[i] = fmt.Sprintf("exit-%03d", i)
	}
	before := make([]string, sessions)
	for s := range sessions {
		before[s] = pool.HRWWinner(ids, "alice", fmt.Sprint("s", s))
	}
	tests := []struct {
		name string
		ids  []string
	}{
		{name: "remove first", ids: ids[1:]},
		{name: "remove middle", ids: slices.Delete(slices.Clone(ids), 50, 51)},
		{name: "add one", ids: append(slices.Clone(ids), "exit-new")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			moved := 0
			for s := range sessions {
				after := pool.HRWWinner(tc.ids, "alice", fmt.Sprint("s", s))
				if after == before[s] {
					continue
				}
				moved++
				if slices.Contains(tc.ids, before[s]) && after != "exit-new" {
					t.Fatalf("session %d moved from %s (still there) to %s", s, before[s], after)
				}
			}
			limit := sessions * (1.0/100 + 0.02)
			t.Logf("%s: %d of %d sessions moved (%.2f%%; limit %.0f)", tc.name, moved, sessions, 100*float64(moved)/sessions, limit)
			if float64(moved) > limit {
				t.Errorf("%d sessions moved, want ≤ %.0f", moved, limit)
			}
			if moved == 0 {
				t.Errorf("no session moved; the membership change had no effect")
			}
		})
	}
}

func TestStickySessions(t *testing.T) {
	t.Parallel()
	crit := func(session string) pool.Criteria {
		return pool.Criteria{Pool: "resi", Customer: "alice", Session: session, SessTime: time.Minute}
	}
	tests := []struct {
		name string
		// change runs between the first pick and the second; it returns the
		// criteria of the second pick.
		change      func(f fixture, first pool.Pick) pool.Criteria
		wantSame    bool // same exit and egress as the first pick
		wantRebound bool
	}{
		{name: "same session same exit and ip", change: func(f fixture, _ pool.Pick) pool.Criteria { return crit("s1") }, wantSame: true},
		{
			name: "use within sesstime keeps it (sliding)",
			change: func(f fixture, _ pool.Pick) pool.Criteria {
				for range 5 {
					f.clock.Advance(50 * time.Second)
					if _, err := f.p.Pick(context.Background(), crit("s1")); err != nil {
						panic(err)
					}
				}
				return crit("s1")
			},
			wantSame: true,
		},
		{
			name: "bound exit removed",
			change: func(f fixture, first pool.Pick) pool.Criteria {
				f.p.Remove(first.Exit.ID)
				return crit("s1")
			},
			wantRebound: true,
		},
		{
			name: "bound exit excluded by failover",
			change: func(f fixture, first pool.Pick) pool.Criteria {
				c := crit("s1")
				c.Exclude = []string{first.Exit.ID}
				return c
			},
			wantRebound: true,
		},
		{
			name: "bound exit draining",
			change: func(f fixture, first pool.Pick) pool.Criteria {
				if err := f.p.Drain(first.Exit.ID, true); err != nil {
					panic(err)
				}
				return crit("s1")
			},
			wantRebound: true,
		},
		{
			name: "bound exit ejected",
			change: func(f fixture, first pool.Pick) pool.Criteria {
				for range 5 {
					f.p.Report(first.Exit.ID, pool.ExitFailed, time.Second)
				}
				return crit("s1")
			},
			wantRebound: true,
		},
		{
			name: "bound exit no longer matches",
			change: func(f fixture, first pool.Pick) pool.Criteria {
				c := crit("s1")
				c.Country = "US"
				return c
			},
			wantRebound: true,
		},
		{
			name: "bound egress ip withdrawn",
			change: func(f fixture, first pool.Pick) pool.Criteria {
				e := *first.Exit
				e.Egress = []netip.Addr{netip.MustParseAddr("192.0.2.1")}
				f.p.Upsert(e)
				return crit("s1")
			},
			wantRebound: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			exits := append(mkExits(4, "de", "eu", "DE"), mkExits(2, "us", "eu", "US")...)
			f := newPool(t, nil, exits...)
			first, err := f.p.Pick(t.Context(), crit("s1"))
			if err != nil {
				t.Fatal(err)
			}
			if first.Rebound {
				t.Errorf("first pick Rebound = true")
			}
			c := tc.change(f, first)
			second, err := f.p.Pick(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			same := second.Exit.ID == first.Exit.ID && second.Egress == first.Egress
			if same != tc.wantSame || second.Rebound != tc.wantRebound {
				t.Errorf("second pick %s/%v rebound=%v after %s/%v; want same=%v rebound=%v",
					second.Exit.ID, second.Egress, second.Rebound, first.Exit.ID, first.Egress, tc.wantSame, tc.wantRebound)
			}
			// The new binding holds.
			third, err := f.p.Pick(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			if third.Exit.ID != second.Exit.ID || third.Egress != second.Egress || third.Rebound {
				t.Errorf("third pick %s/%v rebound=%v, want %s/%v kept", third.Exit.ID, third.Egress, third.Rebound, second.Exit.ID, second.Egress)
			}
		})
	}
}

// TestStickyBindingOutlivesBetterHash binds a session while its exit is the
// only one, adds the exit rendezvous hashing would prefer, and checks the
// binding holds while used and is forgotten after SessTime idle.
func TestStickyBindingOutlivesBetterHash(t *testing.T) {
	t.Parallel()
	ids := []string{"a", "b"}
	session := ""
	for i := 0; session == ""; i++ {
		if s := fmt.Sprint("s", i); pool.HRWWinner(ids, "bob", s) == "b" {
			session = s
		}
	}
	c := pool.Criteria{Pool: "resi", Customer: "bob", Session: session, SessTime: 10 * time.Minute}
	f := newPool(t, nil, pool.Exit{ID: "a", Pool: "resi"})
	if pk, err := f.p.Pick(t.Context(), c); err != nil || pk.Exit.ID != "a" {
		t.Fatalf("Pick = %v, %v; want a", pk.Exit, err)
	}
	f.p.Upsert(pool.Exit{ID: "b", Pool: "resi"})
	f.clock.Advance(9 * time.Minute)
	if pk, err := f.p.Pick(t.Context(), c); err != nil || pk.Exit.ID != "a" || pk.Rebound {
		t.Fatalf("Pick after 9m = %v rebound=%v, %v; want a kept", pk.Exit, pk.Rebound, err)
	}
	f.clock.Advance(10*time.Minute + time.Second)
	if pk, err := f.p.Pick(t.Context(), c); err != nil || pk.Exit.ID != "b" || pk.Rebound {
		t.Fatalf("Pick after idle expiry = %v rebound=%v, %v; want a fresh binding to b", pk.Exit, pk.Rebound, err)
	}
}

func TestStickySpreadsSessions(t *testing.T) {
	t.Parallel()
	f := newPool(t, nil, mkExits(10, "e", "eu", "DE")...)
	exits := make(map[string]int)
	ips := make(map[netip.Addr]int)
	for s := range 2000 {
		pk, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "resi", Customer: "carol", Session: fmt.Sprint(s)})
		if err != nil {
			t.Fatal(err)
		}
		exits[pk.Exit.ID]++
		ips[pk.Egress]++
	}
	if len(exits) != 10 || len(ips) != 20 {
		t.Fatalf("sessions landed on %d exits and %d IPs, want 10 and 20", len(exits), len(ips))
	}
	for id, n := range exits {
		if n < 120 {
			t.Errorf("exit %s got %d of 2000 sessions, want about 200", id, n)
		}
	}
}

func TestStickyRemovalRebindsOnlyItsSessions(t *testing.T) {
	t.Parallel()
	f := newPool(t, nil, mkExits(100, "e", "eu", "DE")...)
	const sessions = 5000
	bound := make([]string, sessions)
	crit := func(s int) pool.Criteria {
		return pool.Criteria{Pool: "resi", Customer: "dave", Session: fmt.Sprint(s)}
	}
	for s := range sessions {
		pk, err := f.p.Pick(t.Context(), crit(s))
		if err != nil {
			t.Fatal(err)
		}
		bound[s] = pk.Exit.ID
	}
	f.p.Remove("e-0042")
	for s := range sessions {
		pk, err := f.p.Pick(t.Context(), crit(s))
		if err != nil {
			t.Fatal(err)
		}
		wasOnRemoved := bound[s] == "e-0042"
		if pk.Rebound != wasOnRemoved || (!wasOnRemoved && pk.Exit.ID != bound[s]) {
			t.Fatalf("session %d: was on %s, now %s rebound=%v", s, bound[s], pk.Exit.ID, pk.Rebound)
		}
	}
}

// failingStore fails every call, like an unreachable Redis.
type failingStore struct{}

var errStoreDown = errors.New("store down")

func (failingStore) Get(context.Context, string, time.Duration) (pool.Binding, bool, error) {
	return pool.Binding{}, false, errStoreDown
}

func (failingStore) Bind(context.Context, string, pool.Binding, time.Duration) (pool.Binding, error) {
	return pool.Binding{}, errStoreDown
}

func (failingStore) Rebind(context.Context, string, pool.Binding, time.Duration) error {
	return errStoreDown
}

func TestStickyStoreDownFallsBackToHash(t *testing.T) {
	t.Parallel()
	exits := mkExits(8, "e", "eu", "DE")
	f := newPool(t, func(c *pool.Config) { c.Sessions = failingStore{} }, exits...)
	ids := make([]string, len(exits))
	for i, e := range exits {
		ids[i] = e.ID
	}
	for s := range 50 {
		session := fmt.Sprint(s)
		want := pool.HRWWinner(ids, "erin", session)
		for range 2 {
			pk, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "resi", Customer: "erin", Session: session})
			if err != nil {
				t.Fatalf("Pick with store down: %v", err)
			}
			if pk.Exit.ID != want {
				t.Fatalf("session %s on %s, want rendezvous winner %s", session, pk.Exit.ID, want)
			}
		}
	}
	// 100 picks failed the same way: one line says so, not one per pick.
	if n := f.logs.Count("session store failing"); n != 1 {
		t.Errorf("store failure logged %d times, want once:\n%s", n, f.logs.String())
	}
}

// flakyStore fails while down is set and stores nothing otherwise.
type flakyStore struct{ down atomic.Bool }

func (s *flakyStore) Get(context.Context, string, time.Duration) (pool.Binding, bool, error) {
	if s.down.Load() {
		return pool.Binding{}, false, errStoreDown
	}
	return pool.Binding{}, false, nil
}

func (s *flakyStore) Bind(_ context.Context, _ string, b pool.Binding, _ time.Duration) (pool.Binding, error) {
	if s.down.Load() {
		return pool.Binding{}, errStoreDown
	}
	return b, nil
}

func (s *flakyStore) Rebind(context.Context, string, pool.Binding, time.Duration) error { return nil }

// Each outage of the session store is logged once when it starts and once
// when it ends.
func TestStickyStoreOutageLoggedOnce(t *testing.T) {
	t.Parallel()
	store := &flakyStore{}
	f := newPool(t, func(c *pool.Config) { c.Sessions = store }, mkExits(4, "e", "eu", "DE")...)
	pick := func(n int) {
		for i := range n {
			if _, err := f.p.Pick(t.Context(), pool.Criteria{Pool: "resi", Customer: "erin", Session: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 2 {
		pick(5)
		store.down.Store(true)
		pick(20)
		store.down.Store(false)
		pick(5)
	}
	if down, up := f.logs.Count("session store failing"), f.logs.Count("session store answering again"); down != 2 || up != 2 {
		t.Errorf("two outages logged as %d starts and %d ends:\n%s", down, up, f.logs.String())
	}
}

// raceStore makes every Bind lose to a binding another gateway made.
type raceStore struct {
	*pool.MemorySessions
	winner pool.Binding
}

func (r raceStore) Bind(ctx context.Context, key string, b pool.Binding, ttl time.Duration) (pool.Binding, error) {
	return r.MemorySessions.Bind(ctx, key, r.winner, ttl)
}

func TestStickyBindRaceUsesWinner(t *testing.T) {
	t.Parallel()
	exits := mkExits(8, "e", "eu", "DE")
	clock := newFakeClock()
	tests := []struct {
		name        string
		winner      pool.Binding
		wantExit    string
		wantRebound bool
	}{
		{name: "winner usable", winner: pool.Binding{ExitID: "e-0005", Egress: exits[5].Egress[1]}, wantExit: "e-0005"},
		{name: "winner unknown here", winner: pool.Binding{ExitID: "elsewhere"}, wantRebound: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			store := raceStore{MemorySessions: pool.NewMemorySessions(clock.Now), winner: tc.winner}
			f := newPool(t, func(c *pool.Config) { c.Sessions = store }, exits...)
			c := pool.Criteria{Pool: "resi", Customer: "frank", Session: "x"}
			pk, err := f.p.Pick(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantExit != "" && (pk.Exit.ID != tc.wantExit || pk.Egress != tc.winner.Egress) {
				t.Errorf("pick %s/%v, want the winner's %s/%v", pk.Exit.ID, pk.Egress, tc.wantExit, tc.winner.Egress)
			}
			if pk.Rebound != tc.wantRebound {
				t.Errorf("Rebound = %v, want %v", pk.Rebound, tc.wantRebound)
			}
			again, err := f.p.Pick(t.Context(), c)
			if err != nil || again.Exit.ID != pk.Exit.ID || again.Egress != pk.Egress {
				t.Errorf("second pick %v/%v (%v), want %s/%v", again.Exit, again.Egress, err, pk.Exit.ID, pk.Egress)
			}
		})
	}
}
