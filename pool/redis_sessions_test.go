package pool

import (
	"net/netip"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

func TestRedisSessionsSharedByGateways(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	a := NewRedisSessions(rdb, prefix, time.Second)
	b := NewRedisSessions(rdb, prefix, time.Second)
	first := Binding{ExitID: "eu-1", Egress: netip.MustParseAddr("198.51.100.1")}
	second := Binding{ExitID: "us-1", Egress: netip.MustParseAddr("2001:db8::7")}

	got, err := a.Bind(ctx, "alice|s1", first, time.Minute)
	if err != nil || got != first {
		t.Fatalf("a.Bind = %+v, %v; want %+v", got, err, first)
	}
	got, err = b.Bind(ctx, "alice|s1", second, time.Minute)
	if err != nil || got != first {
		t.Fatalf("b.Bind lost the race but got %+v, %v; want the winner %+v", got, err, first)
	}
	if got, ok, err := b.Get(ctx, "alice|s1", time.Minute); err != nil || !ok || got != first {
		t.Fatalf("b.Get = %+v, %v, %v", got, ok, err)
	}
	if err := b.Rebind(ctx, "alice|s1", second, time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := a.Get(ctx, "alice|s1", time.Minute); !ok || got != second {
		t.Fatalf("a.Get after b.Rebind = %+v, %v", got, ok)
	}
	// A gateway restart: a new store on the same Redis keeps the binding.
	restarted := NewRedisSessions(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}), prefix, time.Second)
	if got, ok, _ := restarted.Get(ctx, "alice|s1", time.Minute); !ok || got != second {
		t.Fatalf("after a restart Get = %+v, %v", got, ok)
	}
	// No egress IP.
	if got, _ := a.Bind(ctx, "bob|s", Binding{ExitID: "x"}, time.Minute); got != (Binding{ExitID: "x"}) {
		t.Fatalf("binding without egress = %+v", got)
	}
}

// The idle TTL slides on use and a binding left alone expires. Redis keeps
// the time, so the test reads the TTL Redis holds and waits on conditions
// rather than racing sleeps against a short TTL.
func TestRedisSessionsTTLSlides(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	s := NewRedisSessions(rdb, prefix, time.Second)
	b := Binding{ExitID: "eu-1", Egress: netip.MustParseAddr("198.51.100.1")}
	const ttl = time.Minute
	if _, err := s.Bind(ctx, "k", b, ttl); err != nil {
		t.Fatal(err)
	}
	// The binding has sat idle for nearly all of its TTL.
	if err := rdb.PExpire(ctx, s.key("k"), 500*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.Get(ctx, "k", ttl); !ok || err != nil || got != b {
		t.Fatalf("Get = %+v, %v, %v; want %+v", got, ok, err, b)
	}
	if left := rdb.PTTL(ctx, s.key("k")).Val(); left < ttl/2 {
		t.Fatalf("TTL left after a Get: %v, want about %v (Get slides it)", left, ttl)
	}
	// Bind of a session in force slides it too.
	rdb.PExpire(ctx, s.key("k"), 500*time.Millisecond)
	if _, err := s.Bind(ctx, "k", Binding{ExitID: "other"}, ttl); err != nil {
		t.Fatal(err)
	}
	if left := rdb.PTTL(ctx, s.key("k")).Val(); left < ttl/2 {
		t.Fatalf("TTL left after a Bind: %v, want about %v", left, ttl)
	}

	// Left alone, a binding expires after its idle TTL. Watching it with
	// EXISTS does not slide it.
	if _, err := s.Bind(ctx, "short", b, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Exists(ctx, s.key("short")).Val() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("binding outlived its idle TTL by 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, ok, _ := s.Get(ctx, "short", time.Minute); ok {
		t.Fatal("Get found a binding that expired")
	}
}

func TestDecodeBinding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Binding
		ok   bool
	}{
		{"eu-1|198.51.100.1", Binding{ExitID: "eu-1", Egress: netip.MustParseAddr("198.51.100.1")}, true},
		{"a|b|2001:db8::1", Binding{ExitID: "a|b", Egress: netip.MustParseAddr("2001:db8::1")}, true},
		{"eu-1|", Binding{ExitID: "eu-1"}, true},
		{"|1.2.3.4", Binding{}, false},
		{"noseparator", Binding{}, false},
		{"eu-1|not-an-ip", Binding{}, false},
	} {
		got, err := decodeBinding(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("decodeBinding(%q) = %+v, %v", tc.in, got, err)
		}
		if tc.ok && encodeBinding(got) != tc.in {
			t.Errorf("encodeBinding(decodeBinding(%q)) = %q", tc.in, encodeBinding(got))
		}
	}
}
