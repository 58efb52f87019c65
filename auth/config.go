package auth

import (
	"errors"
	"log/slog"
	"runtime"
	"time"
)

// Config tunes a credential store. The zero value is usable: every zero
// field takes its default. Fields marked "RedisStore" mean nothing to a
// FileStore.
type Config struct {
	// CacheTTL is how long a verified (user, password) pair is trusted
	// without asking the store again. A FileStore sees a change to a
	// customer (disabled, expired) at once and a changed password after at
	// most CacheTTL; a RedisStore sees every change within about a second
	// through pub/sub and CacheTTL is the backstop. Default: 1 minute.
	CacheTTL time.Duration

	// MaxVerifies bounds how many slow password verifications (argon2id:
	// 19 MiB and tens of milliseconds each) run at once; further cache misses
	// wait. Default: runtime.GOMAXPROCS(0).
	MaxVerifies int

	// MaxFailedLogins is how many failed logins for one user name from one
	// client address (IPv4 address or IPv6 /64) are allowed in
	// FailedLoginWindow; beyond it that address's logins as that user are
	// refused with ErrLoginThrottled without checking the password. Other
	// addresses are not affected: failures never lock a user name out
	// everywhere. A pair already verified and cached is not throttled.
	// Default: 10.
	MaxFailedLogins int

	// MaxFailedLoginsPerClient is how many failed logins from one client
	// address, whatever the user names, are allowed in FailedLoginWindow;
	// beyond it every login from that address is refused with
	// ErrLoginThrottled without checking the password (cached pairs
	// aside). Higher than MaxFailedLogins because one address may be a NAT
	// in front of many customers. Default: 50.
	MaxFailedLoginsPerClient int

	// FailedLoginWindow is the window MaxFailedLogins and
	// MaxFailedLoginsPerClient count over (a fixed window starting at the
	// first failure). Default: 1 minute.
	FailedLoginWindow time.Duration

	// Prefix starts every Redis key and channel name (RedisStore).
	// Default: "farmgate:".
	Prefix string

	// Timeout bounds each Redis call (RedisStore). Default: 500ms.
	Timeout time.Duration

	// MaxStale is how long past CacheTTL a verified pair is still honoured
	// while Redis is unreachable (RedisStore, fail-static). Default: 1 hour.
	MaxStale time.Duration

	// Now returns the current time; tests inject a fake clock.
	// Default: time.Now.
	Now func() time.Time

	// Logger receives load-time warnings and store outages. It never sees a
	// password. Default: slog.Default().
	Logger *slog.Logger

	// OnLockout is called when failed logins fill a bucket and a lockout
	// starts, with the bucket's scope: "client_user" (MaxFailedLogins) or
	// "client" (MaxFailedLoginsPerClient); once per lockout, on the one
	// gateway that filled it. It must not block. Default nil.
	OnLockout func(scope string)
	// OnThrottled is called for each login refused unchecked with
	// ErrLoginThrottled. It must not block. Default nil.
	OnThrottled func()
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		CacheTTL:                 time.Minute,
		MaxVerifies:              runtime.GOMAXPROCS(0),
		MaxFailedLogins:          10,
		MaxFailedLoginsPerClient: 50,
		FailedLoginWindow:        time.Minute,
		Prefix:                   DefaultPrefix,
		Timeout:                  500 * time.Millisecond,
		MaxStale:                 time.Hour,
		Now:                      time.Now,
		Logger:                   slog.Default(),
	}
}

// DefaultPrefix is the default start of every Redis key.
const DefaultPrefix = "farmgate:"

// Validate reports the first field that is wrong, by name.
func (c Config) Validate() error {
	if c.CacheTTL < 0 {
		return errors.New("auth config: CacheTTL: must not be negative")
	}
	if c.MaxVerifies < 0 {
		return errors.New("auth config: MaxVerifies: must not be negative")
	}
	if c.MaxFailedLogins < 0 {
		return errors.New("auth config: MaxFailedLogins: must not be negative")
	}
	if c.MaxFailedLoginsPerClient < 0 {
		return errors.New("auth config: MaxFailedLoginsPerClient: must not be negative")
	}
	if c.FailedLoginWindow < 0 {
		return errors.New("auth config: FailedLoginWindow: must not be negative")
	}
	if c.Timeout < 0 {
		return errors.New("auth config: Timeout: must not be negative")
	}
	if c.MaxStale < 0 {
		return errors.New("auth config: MaxStale: must not be negative")
	}
	return nil
}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.CacheTTL == 0 {
		c.CacheTTL = d.CacheTTL
	}
	if c.MaxVerifies == 0 {
		c.MaxVerifies = d.MaxVerifies
	}
	if c.MaxFailedLogins == 0 {
		c.MaxFailedLogins = d.MaxFailedLogins
	}
	if c.MaxFailedLoginsPerClient == 0 {
		c.MaxFailedLoginsPerClient = d.MaxFailedLoginsPerClient
	}
	if c.FailedLoginWindow == 0 {
		c.FailedLoginWindow = d.FailedLoginWindow
	}
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxStale == 0 {
		c.MaxStale = d.MaxStale
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}
