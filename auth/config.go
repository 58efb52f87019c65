package auth

import (
	"errors"
	"log/slog"
	"runtime"
	"time"
)

// Config tunes a credential store. The zero value is usable: every zero
// field takes its default.
type Config struct {
	// CacheTTL is how long a verified (user, password) pair is trusted
	// without hashing the password again. A change to a customer (disabled,
	// expired) is seen at once; a changed password after at most CacheTTL.
	// Default: 1 minute.
	CacheTTL time.Duration

	// MaxVerifies bounds how many slow password verifications (argon2id:
	// 19 MiB and tens of milliseconds each) run at once; further cache misses
	// wait. Default: runtime.GOMAXPROCS(0).
	MaxVerifies int

	// Now returns the current time; tests inject a fake clock.
	// Default: time.Now.
	Now func() time.Time

	// Logger receives load-time warnings (plaintext passwords). It never
	// sees a password. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		CacheTTL:    time.Minute,
		MaxVerifies: runtime.GOMAXPROCS(0),
		Now:         time.Now,
		Logger:      slog.Default(),
	}
}

// Validate reports the first field that is wrong, by name.
func (c Config) Validate() error {
	if c.CacheTTL < 0 {
		return errors.New("auth config: CacheTTL: must not be negative")
	}
	if c.MaxVerifies < 0 {
		return errors.New("auth config: MaxVerifies: must not be negative")
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
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}
