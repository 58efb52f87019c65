package pool_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/farmgate/farmgate/pool"
)

func TestMemorySessions(t *testing.T) {
	t.Parallel()
	a := pool.Binding{ExitID: "a", Egress: netip.MustParseAddr("192.0.2.1")}
	b := pool.Binding{ExitID: "b"}
	type step struct {
		advance time.Duration
		op      string // get, bind, rebind
		b       pool.Binding
		want    pool.Binding
		found   bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "get of nothing", steps: []step{{op: "get"}}},
		{name: "bind then get", steps: []step{{op: "bind", b: a, want: a}, {op: "get", want: a, found: true}}},
		{name: "bind keeps the first", steps: []step{{op: "bind", b: a, want: a}, {op: "bind", b: b, want: a}, {op: "get", want: a, found: true}}},
		{name: "rebind replaces", steps: []step{{op: "bind", b: a, want: a}, {op: "rebind", b: b}, {op: "get", want: b, found: true}}},
		{name: "expires after ttl idle", steps: []step{{op: "bind", b: a, want: a}, {advance: time.Minute, op: "get"}}},
		{name: "get slides the ttl", steps: []step{
			{op: "bind", b: a, want: a},
			{advance: 50 * time.Second, op: "get", want: a, found: true},
			{advance: 50 * time.Second, op: "get", want: a, found: true},
			{advance: 59 * time.Second, op: "get", want: a, found: true},
			{advance: 61 * time.Second, op: "get"},
		}},
		{name: "bind over an expired entry", steps: []step{{op: "bind", b: a, want: a}, {advance: time.Hour, op: "bind", b: b, want: b}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			s := pool.NewMemorySessions(clock.Now)
			for i, st := range tc.steps {
				clock.Advance(st.advance)
				var got pool.Binding
				var found bool
				var err error
				switch st.op {
				case "get":
					got, found, err = s.Get(t.Context(), "k", time.Minute)
				case "bind":
					got, err = s.Bind(t.Context(), "k", st.b, time.Minute)
					found = st.found
				case "rebind":
					err = s.Rebind(t.Context(), "k", st.b, time.Minute)
					found = st.found
				}
				if err != nil || got != st.want || found != st.found {
					t.Fatalf("step %d %s: %v %v %v, want %v %v", i, st.op, got, found, err, st.want, st.found)
				}
			}
		})
	}
}

func TestMemorySessionsSweepsExpired(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := pool.NewMemorySessions(clock.Now)
	for i := range 1000 {
		if _, err := s.Bind(t.Context(), fmt.Sprint("old", i), pool.Binding{ExitID: "x"}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Minute)
	// Writes of live sessions sweep the expired ones without a goroutine.
	for i := range 200 {
		if _, err := s.Bind(t.Context(), fmt.Sprint("new", i), pool.Binding{ExitID: "y"}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Len(); n > 200+50 {
		t.Errorf("%d entries after 200 writes, want the 1000 expired ones mostly swept", n)
	}
}
