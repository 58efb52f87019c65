package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/farmgate/farmgate/internal/testkit/logtest"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

type authFrom interface {
	AuthenticateFrom(ctx context.Context, user, password string, client netip.Addr) (*Customer, error)
}

// throttleUsers are the customers of throttleStores; each one's password
// is its name.
var throttleUsers = []string{"demo", "u0", "u1", "u2", "u3", "u4"}

// bcryptOf returns a cheap bcrypt hash of pw: a wrong guess must cost
// little, or a test's failures outlast its window under -race (argon2id
// takes a second there).
func bcryptOf(t *testing.T, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// throttleStores returns, for each kind of store, the store failures are
// made on and the one checked after (for Redis: two gateways sharing the
// counters), both logging to log, with throttleUsers as customers.
func throttleStores(t *testing.T, cfg Config, log *logtest.Recorder) map[string][2]authFrom {
	t.Helper()
	cfg.Logger = slog.New(log)
	yaml := "customers:\n"
	for _, u := range throttleUsers {
		yaml += fmt.Sprintf("  - {user: %s, password_hash: %q, pools: [resi]}\n", u, bcryptOf(t, u))
	}
	file, err := ParseFileConfig([]byte(yaml), "customers.yaml", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rdb, prefix := redistest.Shared(t)
	a, b := redisGateway(t, rdb, prefix, cfg), redisGateway(t, rdb, prefix, cfg)
	for _, u := range throttleUsers {
		if err := a.Put(t.Context(), CustomerRecord{User: u, PasswordHash: bcryptOf(t, u), Pools: []string{"resi"}}, true); err != nil {
			t.Fatal(err)
		}
	}
	return map[string][2]authFrom{"file store": {file, file}, "redis store, two gateways": {a, b}}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestLoginThrottle(t *testing.T) {
	t.Parallel()
	type attempt struct {
		user, password, client string
		want                   error
	}
	// fail is n failed logins of user from client.
	fail := func(n int, user, client string) []attempt {
		var out []attempt
		for range n {
			out = append(out, attempt{user, "guess", client, ErrBadCredentials})
		}
		return out
	}
	var strangers []attempt
	for i := range 30 {
		strangers = append(strangers, attempt{"demo", "guess", fmt.Sprintf("198.51.100.%d", i+1), ErrBadCredentials})
	}
	var spray []attempt // 10 for each of 5 users: 50 from one address
	for i := range 5 {
		spray = append(spray, fail(10, fmt.Sprintf("u%d", i), "203.0.113.9")...)
	}
	for _, tc := range []struct {
		name     string
		attempts []attempt
		lockouts []map[string]string // logged, in order
	}{
		{
			name: "strangers cannot lock a customer out",
			attempts: append(append(strangers, fail(3, "demo", "198.51.100.1")...),
				attempt{"demo", "demo", "192.0.2.1", nil}),
		},
		{
			name: "an address that failed for a user is throttled for that user",
			attempts: append(fail(10, "demo", "198.51.100.7"),
				attempt{"demo", "guess", "198.51.100.7", ErrLoginThrottled},
				attempt{"demo", "demo", "198.51.100.7", ErrLoginThrottled}, // not checked
				attempt{"demo", "guess", "198.51.100.7", ErrLoginThrottled},
				attempt{"nobody", "guess", "198.51.100.7", ErrBadCredentials},
				attempt{"demo", "demo", "192.0.2.1", nil}),
			lockouts: []map[string]string{{"client": "198.51.100.7", "user": "demo", "scope": "client_user"}},
		},
		{
			name: "an address that failed for many users is throttled for all",
			attempts: append(spray,
				attempt{"demo", "demo", "203.0.113.9", ErrLoginThrottled},
				attempt{"nobody", "guess", "203.0.113.9", ErrLoginThrottled},
				attempt{"demo", "demo", "203.0.113.10", nil}),
			// Each user's bucket fills too; the last failure fills both.
			lockouts: []map[string]string{{"client": "203.0.113.9", "user": "u0", "scope": "client_user"},
				{"user": "u1"}, {"user": "u2"}, {"user": "u3"}, {"user": "u4", "scope": "client_user"},
				{"client": "203.0.113.9", "user": "u4", "scope": "client"}},
		},
		{
			name: "IPv6 counts by /64",
			attempts: append(fail(10, "demo", "2001:db8::1"),
				attempt{"demo", "demo", "2001:db8::ffff", ErrLoginThrottled},
				attempt{"demo", "demo", "2001:db8:0:1::1", nil}),
			lockouts: []map[string]string{{"client": "2001:db8::/64", "user": "demo", "scope": "client_user"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			log := &logtest.Recorder{}
			for kind, st := range throttleStores(t, Config{}, log) {
				for i, a := range tc.attempts {
					s := st[0]
					if a.want != ErrBadCredentials {
						s = st[1]
					}
					_, err := s.AuthenticateFrom(t.Context(), a.user, a.password, addr(a.client))
					if !errors.Is(err, a.want) && !(a.want == nil && err == nil) {
						t.Fatalf("%s: attempt %d (%s/%s from %s) = %v, want %v", kind, i+1, a.user, a.password, a.client, err, a.want)
					}
				}
			}
			// Both stores logged each lockout once, however many attempts
			// it refused.
			got := log.Lines("failed logins throttled")
			if len(got) != 2*len(tc.lockouts) {
				t.Fatalf("logged %d lockouts %v, want %d (once per store)", len(got), got, 2*len(tc.lockouts))
			}
			for i, line := range got {
				want := tc.lockouts[i%len(tc.lockouts)]
				for k, v := range want {
					if line.Attrs[k] != v {
						t.Errorf("lockout line %v: %s=%q, want %q", line.Attrs, k, line.Attrs[k], v)
					}
				}
			}
		})
	}
}

func TestLoginThrottleWindowEnds(t *testing.T) {
	t.Parallel()
	const window = time.Second
	for kind, st := range throttleStores(t, Config{MaxFailedLogins: 2, FailedLoginWindow: window}, &logtest.Recorder{}) {
		t.Run(kind, func(t *testing.T) {
			client := addr("198.51.100.1")
			for range 2 {
				st[0].AuthenticateFrom(t.Context(), "demo", "guess", client)
			}
			if _, err := st[1].AuthenticateFrom(t.Context(), "demo", "demo", client); !errors.Is(err, ErrLoginThrottled) {
				t.Fatalf("after 2 failures: %v, want ErrLoginThrottled", err)
			}
			eventually(t, 10*window, "admitted after the window", func() bool {
				_, err := st[1].AuthenticateFrom(t.Context(), "demo", "demo", client)
				return err == nil
			})
		})
	}
}

func TestConfigValidateThrottle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{MaxFailedLogins: -1}, "MaxFailedLogins"},
		{Config{MaxFailedLoginsPerClient: -1}, "MaxFailedLoginsPerClient"},
		{Config{FailedLoginWindow: -1}, "FailedLoginWindow"},
	} {
		err := tc.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.field+":") {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
}
