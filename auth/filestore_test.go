package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// testHash is one argon2id hash of "hashed-pw", made once for all tests.
var testHash = sync.OnceValue(func() string {
	h, err := HashPassword("hashed-pw")
	if err != nil {
		panic(err)
	}
	return h
})

// testStore is a file with a plaintext, an argon2id, a bcrypt, a disabled
// and an expired customer, read with a fake clock.
func testStore(t testing.TB) (*FileStore, *fakeClock) {
	t.Helper()
	b, err := bcrypt.GenerateFromPassword([]byte("bcrypt-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	file := `
customers:
  - user: demo
    password: demo
    pools: [resi, DC]
  - user: hashed
    password_hash: "` + testHash() + `"
    pools: [resi, dc]
    default_pool: dc
    allow_ips: [203.0.113.0/24, 2001:db8::1]
    max_conns: 7
  - user: bc
    password_hash: "` + string(b) + `"
    pools: [dc]
  - user: off
    password: off
    pools: [resi]
    disabled: true
  - user: old
    password: old
    pools: [resi]
    expires: 2025-12-31T23:59:59Z
`
	clock := newFakeClock()
	s, err := ParseFileConfig([]byte(file), "customers.yaml", Config{Now: clock.Now, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	return s, clock
}

func TestFileStoreAuthenticate(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	tests := []struct {
		name, user, password string
		wantErr              error
	}{
		{"plaintext password", "demo", "demo", nil},
		{"argon2id password", "hashed", "hashed-pw", nil},
		{"bcrypt password", "bc", "bcrypt-pw", nil},
		{"wrong plaintext password", "demo", "Demo", ErrBadCredentials},
		{"wrong argon2id password", "hashed", "demo", ErrBadCredentials},
		{"wrong bcrypt password", "bc", "bcrypt-pw!", ErrBadCredentials},
		{"empty password", "demo", "", ErrBadCredentials},
		{"unknown user", "nobody", "demo", ErrBadCredentials},
		{"user names are case-sensitive", "Demo", "demo", ErrBadCredentials},
		{"disabled customer with the right password", "off", "off", ErrBadCredentials},
		{"expired customer with the right password", "old", "old", ErrBadCredentials},
		{"huge password", "demo", strings.Repeat("x", 2000), ErrBadCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Twice: the second answer may come from the cache and must agree.
			for range 2 {
				c, err := s.Authenticate(t.Context(), tc.user, tc.password)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Authenticate(%q, %q) = %v, want %v", tc.user, tc.password, err, tc.wantErr)
				}
				if tc.wantErr != nil {
					if c != nil {
						t.Fatalf("Authenticate failed but returned customer %+v", c)
					}
					if strings.Contains(err.Error(), tc.password) && tc.password != "" && tc.password != tc.user {
						t.Errorf("error %q contains the password", err)
					}
					continue
				}
				if c == nil || c.User != tc.user {
					t.Fatalf("Authenticate(%q) = %+v, want that customer", tc.user, c)
				}
			}
		})
	}
}

func TestFileStoreCustomerFields(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	demo, _ := s.Customer("demo")
	if got := demo.Pools; len(got) != 2 || got[0] != "resi" || got[1] != "dc" {
		t.Errorf("demo pools = %v, want [resi dc] (lower-cased)", got)
	}
	if demo.Pool("") != "resi" || demo.Pool("dc") != "dc" {
		t.Errorf("demo: Pool(\"\") = %q, Pool(dc) = %q; want resi, dc", demo.Pool(""), demo.Pool("dc"))
	}
	if !demo.AllowsPool("dc") || demo.AllowsPool("DC") || demo.AllowsPool("mobile") {
		t.Error("demo: AllowsPool wrong for dc / DC / mobile")
	}
	if !demo.AllowsIP(netip.MustParseAddr("192.0.2.1")) {
		t.Error("demo has no allowlist but AllowsIP is false")
	}
	h, _ := s.Customer("hashed")
	if h.DefaultPool != "dc" || h.Pool("") != "dc" || h.MaxConns != 7 {
		t.Errorf("hashed = %+v, want default pool dc and max_conns 7", h)
	}
	for addr, want := range map[string]bool{
		"203.0.113.9": true, "::ffff:203.0.113.9": true, "2001:db8::1": true,
		"203.0.114.1": false, "2001:db8::2": false,
	} {
		if got := h.AllowsIP(netip.MustParseAddr(addr)); got != want {
			t.Errorf("hashed.AllowsIP(%s) = %v, want %v", addr, got, want)
		}
	}
	old, _ := s.Customer("old")
	if !old.Expires.Equal(time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC)) {
		t.Errorf("old.Expires = %v", old.Expires)
	}
	date, err := ParseFileConfig([]byte("customers: [{user: a, password: a, pools: [p], expires: 2027-01-31}]"), "f", Config{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := date.Customer("a"); !a.Expires.Equal(time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("expires: 2027-01-31 gives %v, want midnight UTC", a.Expires)
	}
	if got := strings.Join(s.Users(), ","); got != "demo,hashed,bc,off,old" {
		t.Errorf("Users() = %s", got)
	}
	if err := s.CheckPools(func(p string) bool { return p == "resi" || p == "dc" }); err != nil {
		t.Errorf("CheckPools with every pool known: %v", err)
	}
	err = s.CheckPools(func(p string) bool { return p == "resi" })
	if want := `customers.yaml: customers[0].pools[1]: unknown pool "dc"`; err == nil || err.Error() != want {
		t.Errorf("CheckPools without dc = %v, want %s", err, want)
	}
}

func TestParseFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, file, want string
	}{
		{"empty file", "", "customers.yaml: customers: no customers defined"},
		{"no customers", "customers: []", "customers.yaml: customers: no customers defined"},
		{"unknown top-level field", "customer:\n  - user: a\n", "customers.yaml:1: customer: unknown key; did you mean customers? (known: customers)"},
		{"unknown customer field", "customers:\n  - user: a\n    password: a\n    pools: [p]\n    pool: p\n",
			"customers.yaml:5: pool: unknown key; did you mean pools? (known: allow_ips, default_pool, disabled, expires, max_conns, password, password_hash, pools, quota_bytes, rate_burst, rate_per_sec, user)"},
		{"not YAML", "customers: [", "customers.yaml:1: did not find expected node content"},
		{"YAML error on line 3", "customers:\n  - user: a\n   password: a\n", "customers.yaml:3: did not find expected '-' indicator"},
		{"two documents", "customers:\n  - {user: a, password: a, pools: [p]}\n---\nx: 1\n", "single YAML document"},
		{"user missing", "customers:\n  - password: a\n    pools: [p]\n", `customers.yaml:2: customers[0].user: "" must be 1-64`},
		{"user with a dash", "customers:\n  - {user: a-b, password: a, pools: [p]}\n", `customers[0].user: "a-b" must be 1-64`},
		{"duplicate user", "customers:\n  - {user: a, password: a, pools: [p]}\n  - {user: a, password: b, pools: [p]}\n",
			`customers.yaml:3: customers[1].user: "a" already defined at customers[0]`},
		{"no password", "customers:\n  - {user: a, pools: [p]}\n", "customers[0]: want password or password_hash"},
		{"both passwords", "customers:\n  - {user: a, password: a, password_hash: x, pools: [p]}\n", "customers[0]: want one of password and password_hash, not both"},
		{"empty password", "customers:\n  - {user: a, password: '', pools: [p]}\n", "customers[0].password: must not be empty"},
		{"unparsable hash", "customers:\n  - {user: a, password_hash: 'md5:abc', pools: [p]}\n", "customers[0].password_hash: parsing password hash"},
		{"no pools", "customers:\n  - {user: a, password: a}\n", "customers[0].pools: want at least one pool"},
		{"bad pool name", "customers:\n  - {user: a, password: a, pools: [p, 'x y']}\n", `customers[0].pools[1]: "x y" must be 1-64`},
		{"duplicate pool", "customers:\n  - {user: a, password: a, pools: [p, P]}\n", `customers[0].pools[1]: "p" listed twice`},
		{"default pool not in pools", "customers:\n  - {user: a, password: a, pools: [p], default_pool: q}\n", `customers[0].default_pool: "q" is not one of pools [p]`},
		{"bad allow_ips", "customers:\n  - {user: a, password: a, pools: [p], allow_ips: [10.0.0.0/33]}\n", `customers[0].allow_ips[0]: "10.0.0.0/33" is not an IP address or CIDR`},
		{"negative max_conns", "customers:\n  - {user: a, password: a, pools: [p], max_conns: -1}\n", "customers[0].max_conns: must not be negative"},
		{"bad expires", "customers:\n  - {user: a, password: a, pools: [p], expires: soon}\n", `customers[0].expires: "soon" is not an RFC 3339 time`},
		{"pools not a list", "customers:\n  - {user: a, password: a, pools: p}\n", `customers.yaml:2: want a list, got the string "p"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseFileConfig([]byte(tc.file), "customers.yaml", Config{Logger: quietLogger})
			if err == nil {
				t.Fatalf("ParseFile accepted %q: %+v", tc.file, s)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "customers.yaml:") {
				t.Errorf("error = %q, want it to start with the file name", err)
			}
		})
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "customers.yaml")
	if err := os.WriteFile(path, []byte("customers:\n  - user: demo\n    password: demo\n    pools: [resi, dc]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadFileConfig(path, Config{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Authenticate(t.Context(), "demo", "demo")
	if err != nil || c.Pool("") != "resi" {
		t.Fatalf("Authenticate(demo, demo) = %+v, %v", c, err)
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml")); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("LoadFile(missing) = %v, want a not-exist error naming the file", err)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"zero value is valid", Config{}, ""},
		{"defaults are valid", DefaultConfig(), ""},
		{"negative CacheTTL", Config{CacheTTL: -1}, "CacheTTL"},
		{"negative MaxVerifies", Config{MaxVerifies: -1}, "MaxVerifies"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want error naming %q", err, tc.want)
			}
		})
	}
	if _, err := ParseFileConfig([]byte("customers: [{user: a, password: a, pools: [p]}]"), "f", Config{CacheTTL: -1}); err == nil {
		t.Error("ParseFileConfig accepted a negative CacheTTL")
	}
}

func TestCacheExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	s, clock := testStore(t)
	ctx := t.Context()
	if _, err := s.Authenticate(ctx, "hashed", "hashed-pw"); err != nil {
		t.Fatal(err)
	}
	if !s.cached("hashed", "hashed-pw") {
		t.Fatal("a verified pair is not cached")
	}
	if s.cached("hashed", "wrong") {
		t.Fatal("a wrong password is cached")
	}
	clock.Advance(time.Minute - time.Nanosecond)
	if !s.cached("hashed", "hashed-pw") {
		t.Fatal("the pair left the cache before the 1-minute default TTL")
	}
	clock.Advance(time.Nanosecond)
	if s.cached("hashed", "hashed-pw") {
		t.Fatal("the pair is still cached after the TTL")
	}
	// The next check verifies again, caches again, and sweeps the expired entry.
	if _, err := s.Authenticate(ctx, "hashed", "hashed-pw"); err != nil {
		t.Fatal(err)
	}
	if !s.cached("hashed", "hashed-pw") || s.cacheLen() != 1 {
		t.Fatalf("after re-verifying: cached = %v, entries = %d; want true, 1", s.cached("hashed", "hashed-pw"), s.cacheLen())
	}
}

func TestCacheTTLConfig(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s, err := ParseFileConfig([]byte("customers: [{user: a, password: a, pools: [p]}]"), "f",
		Config{CacheTTL: 5 * time.Second, Now: clock.Now, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(t.Context(), "a", "a"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(5 * time.Second)
	if s.cached("a", "a") {
		t.Error("pair cached past the configured 5s TTL")
	}
}

func TestCachedCustomerExpiresWhileCached(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	file := "customers: [{user: a, password: a, pools: [p], expires: 2026-01-01T00:00:30Z}]"
	s, err := ParseFileConfig([]byte(file), "f", Config{Now: clock.Now, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(t.Context(), "a", "a"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second) // still cached, but the account has expired
	if _, err := s.Authenticate(t.Context(), "a", "a"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("Authenticate after expiry = %v, want ErrBadCredentials", err)
	}
}

func TestCacheHitDoesNotAllocate(t *testing.T) {
	// Not parallel: AllocsPerRun measures the whole process.
	s, _ := testStore(t)
	ctx := context.Background()
	for _, u := range []struct{ user, password string }{{"demo", "demo"}, {"hashed", "hashed-pw"}} {
		if _, err := s.Authenticate(ctx, u.user, u.password); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(1000, func() {
			if _, err := s.Authenticate(ctx, u.user, u.password); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("cache hit for %s allocates %v times, want 0", u.user, n)
		}
	}
}

func TestConcurrentAuthenticate(t *testing.T) {
	t.Parallel()
	s, _ := testStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			pw := "hashed-pw"
			if i%4 == 0 {
				pw = "wrong"
			}
			_, err := s.Authenticate(t.Context(), "hashed", pw)
			if (pw == "wrong") != errors.Is(err, ErrBadCredentials) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Authenticate: %v", err)
	}
}

func TestAuthenticateGivesUpWithItsContext(t *testing.T) {
	t.Parallel()
	s, err := ParseFileConfig([]byte("customers: [{user: h, password_hash: '"+testHash()+"', pools: [p]}]"), "f",
		Config{MaxVerifies: 1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	// Hold the only verification slot so the next check has to wait.
	s.flights.sem <- struct{}{}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	t.Cleanup(cancel)
	if _, err := s.Authenticate(ctx, "h", "hashed-pw"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Authenticate with every slot busy = %v, want DeadlineExceeded", err)
	}
	<-s.flights.sem
	if _, err := s.Authenticate(t.Context(), "h", "hashed-pw"); err != nil {
		t.Fatalf("Authenticate once a slot is free: %v", err)
	}
}

func BenchmarkAuthenticateCacheHit(b *testing.B) {
	s, _ := testStore(b)
	ctx := context.Background()
	if _, err := s.Authenticate(ctx, "hashed", "hashed-pw"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Authenticate(ctx, "hashed", "hashed-pw"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkAuthenticateMiss(b *testing.B) {
	s, _ := testStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Authenticate(ctx, "nobody", "x"); !errors.Is(err, ErrBadCredentials) {
			b.Fatal(err)
		}
	}
}

func FuzzParseFile(f *testing.F) {
	for _, s := range []string{
		"customers:\n  - user: demo\n    password: demo\n    pools: [resi, dc]\n",
		"customers: [{user: a, password_hash: '$2b$04$abcdefghijklmnopqrstuuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01', pools: [p], default_pool: p}]",
		"customers: [{user: a, password_hash: '$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw', pools: [p]}]",
		"customers: [{user: a, password: a, pools: [p], allow_ips: ['::ffff:10.0.0.0/104'], expires: 2030-01-01}]",
		"customers: [{user: a, password: a, pools: [p]}, {user: a, password: a, pools: [p]}]",
		"customers:\n  - &x {user: a, password: a, pools: [p]}\n  - *x\n",
		"", "---", "customers: {}", "[1, 2]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseFileConfig(data, "fuzz.yaml", Config{Logger: quietLogger})
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml:") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, u := range s.Users() {
			c, ok := s.Customer(u)
			if !ok || seen[u] || !validUser(u) || len(c.Pools) == 0 || !c.AllowsPool(c.DefaultPool) {
				t.Fatalf("accepted an invalid customer %q: %+v", u, c)
			}
			seen[u] = true
		}
	})
}

func TestParseFileNumericScalars(t *testing.T) {
	t.Parallel()
	// YAML reads 123 as a number; the customer still means the string "123".
	s, err := ParseFileConfig([]byte("customers: [{user: 123, password: 456, pools: [789]}]"), "f", Config{Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Authenticate(t.Context(), "123", "456")
	if err != nil || c.DefaultPool != "789" {
		t.Fatalf("Authenticate(123, 456) = %+v, %v", c, err)
	}
}
