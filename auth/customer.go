package auth

import (
	"context"
	"net/netip"
	"time"
)

// Customer is one account. A *Customer handed out by a store is shared and
// read-only: callers must not modify it.
type Customer struct {
	// User is the customer's user name, as in the proxy username.
	User string
	// Pools are the pools the customer may use, lower-case, at least one.
	Pools []string
	// DefaultPool is the pool used when the username names no zone; it is
	// one of Pools. Default: Pools[0].
	DefaultPool string
	// Disabled customers are refused with ErrBadCredentials.
	Disabled bool
	// AllowIPs, if not empty, are the only client networks the customer may
	// connect from; the gateway checks them with AllowsIP. Default: anywhere.
	AllowIPs []netip.Prefix
	// MaxConns caps the customer's concurrent tunnels; 0 means no cap.
	// Enforced by MemoryLimiter.Admit, or RedisLimiter.Admit across gateways.
	MaxConns int
	// RatePerSec is the customer's request rate in requests per second
	// (GCRA, enforced by the same Admit); 0 means unlimited.
	RatePerSec float64
	// RateBurst is how many requests may come at once on top of the
	// steady rate. Default (0): max(1, RatePerSec rounded up).
	RateBurst int
	// QuotaBytes is the bandwidth quota per calendar month (UTC), in bytes
	// up plus down, checked with a Meter's OverQuota; 0 means no quota.
	QuotaBytes int64
	// Expires, if not zero, is when the account stops working; from then on
	// it is refused with ErrBadCredentials. Default: never.
	Expires time.Time
}

// AllowsPool reports whether the customer may use pool (a lower-case name).
// It does not allocate.
func (c *Customer) AllowsPool(pool string) bool {
	for _, p := range c.Pools {
		if p == pool {
			return true
		}
	}
	return false
}

// Pool returns the pool a username's zone selects: zone itself, or
// DefaultPool when zone is "". It does not check AllowsPool.
func (c *Customer) Pool(zone string) string {
	if zone == "" {
		return c.DefaultPool
	}
	return zone
}

// AllowsIP reports whether a client at addr may use this account: always
// when AllowIPs is empty, else when one of the prefixes contains addr
// (IPv4-mapped IPv6 addresses are unmapped first).
func (c *Customer) AllowsIP(addr netip.Addr) bool {
	if len(c.AllowIPs) == 0 {
		return true
	}
	addr = addr.Unmap()
	for _, p := range c.AllowIPs {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// active reports whether the customer may log in at now.
func (c *Customer) active(now time.Time) bool {
	return !c.Disabled && (c.Expires.IsZero() || now.Before(c.Expires))
}

// Authenticator checks a user name and password. The gateway depends on
// this interface; FileStore and RedisStore implement it.
//
// Authenticate is called once per customer request or tunnel, from many
// goroutines at once, and must be safe for that. It returns an error
// wrapping ErrBadCredentials on any mismatch (unknown user, wrong password,
// disabled or expired customer); other errors (a cancelled ctx, a store
// outage) mean the check could not be made.
type Authenticator interface {
	Authenticate(ctx context.Context, user, password string) (*Customer, error)
}
