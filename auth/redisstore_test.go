package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/farmgate/farmgate/internal/testkit/logtest"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

// redisGateway is one gateway's store on rdb under prefix.
func redisGateway(t testing.TB, rdb redis.UniversalClient, prefix string, cfg Config) *RedisStore {
	t.Helper()
	cfg.Prefix = prefix
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	s, err := NewRedisStore(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// runStore runs s's subscriber until the test ends and waits for it.
func runStore(t testing.TB, s *RedisStore) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 5*time.Second, "subscribed", func() bool { return s.subscribed() > 0 })
}

func TestRedisStoreAuthenticate(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	a := redisGateway(t, rdb, prefix, Config{})
	b := redisGateway(t, rdb, prefix, Config{})
	for _, r := range []CustomerRecord{
		{User: "alice", PasswordHash: testHash(), Pools: []string{"resi", "DC"}, MaxConns: 3, RatePerSec: 5, QuotaBytes: 1000},
		{User: "plain", Password: "hashed-pw", Pools: []string{"dc"}},
		{User: "off", PasswordHash: testHash(), Pools: []string{"dc"}, Disabled: true},
		{User: "old", PasswordHash: testHash(), Pools: []string{"dc"}, Expires: "2020-01-01"},
		{User: "fenced", PasswordHash: testHash(), Pools: []string{"dc"}, AllowIPs: []string{"203.0.113.0/24"}},
	} {
		if err := a.Put(ctx, r, true); err != nil {
			t.Fatalf("Put(%s): %v", r.User, err)
		}
	}
	tests := []struct {
		name, user, password string
		client               string
		wantErr              error
	}{
		{"argon2id password", "alice", "hashed-pw", "", nil},
		{"plaintext given on Put is stored hashed", "plain", "hashed-pw", "", nil},
		{"wrong password", "alice", "nope", "", ErrBadCredentials},
		{"unknown user", "nobody", "hashed-pw", "", ErrBadCredentials},
		{"disabled", "off", "hashed-pw", "", ErrBadCredentials},
		{"expired", "old", "hashed-pw", "", ErrBadCredentials},
		{"allowlisted client", "fenced", "hashed-pw", "203.0.113.9", nil},
		{"client outside the allowlist", "fenced", "hashed-pw", "198.51.100.1", ErrBadCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var client netip.Addr
			if tc.client != "" {
				client = netip.MustParseAddr(tc.client)
			}
			for _, s := range []*RedisStore{a, b, a} { // both gateways; then from the cache
				c, err := s.AuthenticateFrom(ctx, tc.user, tc.password, client)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("AuthenticateFrom(%q) = %v, want %v", tc.user, err, tc.wantErr)
				}
				if err == nil && c.User != tc.user {
					t.Fatalf("got customer %q", c.User)
				}
			}
		})
	}
	c, _ := b.Authenticate(ctx, "alice", "hashed-pw")
	if c.MaxConns != 3 || c.RatePerSec != 5 || c.QuotaBytes != 1000 || c.DefaultPool != "resi" || !c.AllowsPool("dc") {
		t.Errorf("alice = %+v", c)
	}
	r, err := a.Get(ctx, "plain")
	if err != nil || r.Password != "" || r.PasswordHash == "" {
		t.Errorf("Get(plain) = %+v, %v; want only a hash stored", r, err)
	}
}

func TestRedisStoreAdminErrors(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	s := redisGateway(t, rdb, prefix, Config{})
	ok := CustomerRecord{User: "bob", Password: "pw", Pools: []string{"resi"}}
	if err := s.Put(ctx, ok, true); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		r       CustomerRecord
		create  bool
		wantErr error
		field   string
	}{
		{"duplicate user", ok, true, ErrCustomerExists, ""},
		{"set unknown user", CustomerRecord{User: "carol", Password: "pw", Pools: []string{"resi"}}, false, ErrUnknownCustomer, ""},
		{"malformed CIDR", CustomerRecord{User: "dave", Password: "pw", Pools: []string{"resi"}, AllowIPs: []string{"10.0.0.0/33"}}, true, ErrInvalidCustomer, "allow_ips[0]"},
		{"bad user name", CustomerRecord{User: "a-b", Password: "pw", Pools: []string{"resi"}}, true, ErrInvalidCustomer, "user"},
		{"no pools", CustomerRecord{User: "erin", Password: "pw"}, true, ErrInvalidCustomer, "pools"},
		{"negative quota", CustomerRecord{User: "fay", Password: "pw", Pools: []string{"p"}, QuotaBytes: -1}, true, ErrInvalidCustomer, "quota_bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Put(ctx, tc.r, tc.create)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Put = %v, want %v", err, tc.wantErr)
			}
			var fe *FieldError
			if tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
				t.Fatalf("Put = %v, want the field %s named", err, tc.field)
			}
		})
	}
	if err := (CustomerRecord{User: "g", Password: "pw", Pools: []string{"resi", "mobile"}}).Validate(func(p string) bool { return p == "resi" }); err == nil || err.Error() != `pools[1]: unknown pool "mobile"` {
		t.Errorf("Validate with known pools = %v", err)
	}
	if _, err := s.Get(ctx, "nobody"); !errors.Is(err, ErrUnknownCustomer) {
		t.Errorf("Get(nobody) = %v", err)
	}
	if err := s.Delete(ctx, "nobody"); !errors.Is(err, ErrUnknownCustomer) {
		t.Errorf("Delete(nobody) = %v", err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].User != "bob" {
		t.Errorf("List = %+v, %v", list, err)
	}
	if err := s.Delete(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "bob", "pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("Authenticate after Delete = %v", err)
	}
}

func TestRedisStoreInvalidationWithin5s(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	a := redisGateway(t, rdb, prefix, Config{CacheTTL: time.Hour})
	b := redisGateway(t, rdb, prefix, Config{CacheTTL: time.Hour})
	runStore(t, b)
	if err := a.Put(ctx, CustomerRecord{User: "alice", PasswordHash: testHash(), Pools: []string{"resi"}}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Authenticate(ctx, "alice", "hashed-pw"); err != nil {
		t.Fatal(err)
	}
	r, _ := a.Get(ctx, "alice")
	r.Disabled = true
	start := time.Now()
	if err := a.Put(ctx, r, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "gateway b still admits alice after she was disabled", func() bool {
		_, err := b.Authenticate(ctx, "alice", "hashed-pw")
		return errors.Is(err, ErrBadCredentials)
	})
	t.Logf("disable seen by the other gateway after %v", time.Since(start))

	// A password change: the old password stops working, the new one works.
	r.Disabled, r.PasswordHash, r.Password = false, "", "new-pw"
	if err := a.Put(ctx, r, false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "old password still accepted", func() bool {
		_, err := b.Authenticate(ctx, "alice", "hashed-pw")
		return errors.Is(err, ErrBadCredentials)
	})
	if _, err := b.Authenticate(ctx, "alice", "new-pw"); err != nil {
		t.Errorf("new password: %v", err)
	}
}

func TestRedisStoreFailStatic(t *testing.T) {
	t.Parallel()
	proc := redistest.Start(t)
	logs := &logtest.Recorder{}
	clock := newFakeClock()
	s := redisGateway(t, proc.Client(), "fg:", Config{CacheTTL: time.Minute, MaxStale: 10 * time.Minute,
		Timeout: 200 * time.Millisecond, Now: clock.Now, Logger: slog.New(logs)})
	ctx := t.Context()
	for _, u := range []string{"alice", "bob"} {
		if err := s.Put(ctx, CustomerRecord{User: u, Password: "pw-" + u, Pools: []string{"resi"}}, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Authenticate(ctx, "alice", "pw-alice"); err != nil {
		t.Fatal(err)
	}
	proc.Stop()
	clock.Advance(2 * time.Minute) // past the TTL: alice's entry is stale
	for range 5 {
		if _, err := s.Authenticate(ctx, "alice", "pw-alice"); err != nil {
			t.Fatalf("verified customer during the outage: %v", err)
		}
		if _, err := s.Authenticate(ctx, "bob", "pw-bob"); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("new customer during the outage = %v, want ErrStoreUnavailable", err)
		}
		if _, err := s.Authenticate(ctx, "alice", "wrong"); !errors.Is(err, ErrStoreUnavailable) {
			t.Fatalf("wrong password during the outage = %v, want ErrStoreUnavailable", err)
		}
	}
	if n := logs.Count("redis unreachable; serving from memory"); n != 1 {
		t.Errorf("outage start logged %d times, want 1", n)
	}
	clock.Advance(10 * time.Minute) // past MaxStale: even alice is refused
	if _, err := s.Authenticate(ctx, "alice", "pw-alice"); !errors.Is(err, ErrStoreUnavailable) {
		t.Errorf("past MaxStale = %v, want ErrStoreUnavailable", err)
	}
	proc.Restart() // an empty Redis (no persistence in tests): load bob again
	if err := s.Put(ctx, CustomerRecord{User: "bob", Password: "pw-bob", Pools: []string{"resi"}}, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "bob admitted after redis returned", func() bool {
		_, err := s.Authenticate(ctx, "bob", "pw-bob")
		if err != nil {
			t.Log(err)
		}
		return err == nil
	})
	if n := logs.Count("redis reachable again"); n != 1 {
		t.Errorf("outage end logged %d times, want 1", n)
	}
	if n := logs.Count("redis unreachable; serving from memory"); n != 1 {
		t.Errorf("outage start logged %d times in all, want 1", n)
	}
}

func TestRedisCacheHitDoesNotAllocate(t *testing.T) {
	rdb, prefix := redistest.Shared(t)
	s := redisGateway(t, rdb, prefix, Config{})
	ctx := t.Context()
	if err := s.Put(ctx, CustomerRecord{User: "alice", Password: "pw", Pools: []string{"resi"}, AllowIPs: []string{"10.0.0.0/8"}}, true); err != nil {
		t.Fatal(err)
	}
	client := netip.MustParseAddr("10.1.2.3")
	if _, err := s.AuthenticateFrom(ctx, "alice", "pw", client); err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(1000, func() {
		if _, err := s.AuthenticateFrom(ctx, "alice", "pw", client); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("cache hit allocates %v times, want 0", n)
	}
}

func BenchmarkRedisStoreAuthenticateCacheHit(b *testing.B) {
	rdb, prefix := redistest.Shared(b)
	s := redisGateway(b, rdb, prefix, Config{})
	ctx := context.Background()
	if err := s.Put(ctx, CustomerRecord{User: "alice", PasswordHash: testHash(), Pools: []string{"resi"}}, true); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, "alice", "hashed-pw"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Authenticate(ctx, "alice", "hashed-pw"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
