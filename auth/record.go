package auth

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
)

// CustomerRecord is a customer as stored and managed: the YAML entry of a
// FileStore, the JSON value of a RedisStore, the input of Admin.Put and the
// output of the CLI's --json. Validate checks it; stores validate on Put.
type CustomerRecord struct {
	// User is the user name: 1-64 of A-Z a-z 0-9 _ . @, no '-'.
	User string `json:"user" yaml:"user"`
	// Password is a plaintext password. A FileStore keeps one it read from
	// its file (demos); Put hashes a new one with argon2id and stores only
	// the hash.
	Password string `json:"password,omitempty" yaml:"password,omitempty"`
	// PasswordHash is an argon2id PHC string or a bcrypt hash (import).
	PasswordHash string `json:"password_hash,omitempty" yaml:"password_hash,omitempty"`
	// Pools the customer may use, at least one; lower-cased on Put.
	Pools []string `json:"pools" yaml:"pools,flow"`
	// DefaultPool is one of Pools. Default: Pools[0].
	DefaultPool string `json:"default_pool,omitempty" yaml:"default_pool,omitempty"`
	// Disabled customers cannot log in.
	Disabled bool `json:"disabled,omitempty" yaml:"disabled,omitempty"`
	// AllowIPs are CIDRs or addresses the customer may connect from.
	// Default: anywhere.
	AllowIPs []string `json:"allow_ips,omitempty" yaml:"allow_ips,omitempty,flow"`
	// MaxConns caps concurrent tunnels; 0 means no cap.
	MaxConns int `json:"max_conns,omitempty" yaml:"max_conns,omitempty"`
	// RatePerSec is requests per second; 0 means unlimited.
	RatePerSec float64 `json:"rate_per_sec,omitempty" yaml:"rate_per_sec,omitempty"`
	// RateBurst is requests at once on top of the rate. Default: max(1, ceil(RatePerSec)).
	RateBurst int `json:"rate_burst,omitempty" yaml:"rate_burst,omitempty"`
	// QuotaBytes is bytes (up + down) per calendar month; 0 means no quota.
	QuotaBytes int64 `json:"quota_bytes,omitempty" yaml:"quota_bytes,omitempty"`
	// Expires is an RFC 3339 time or a date (midnight UTC). Default: never.
	Expires string `json:"expires,omitempty" yaml:"expires,omitempty"`
}

// Admin manages customers in a store; FileStore and RedisStore implement
// it. A change takes effect on every gateway using the store within
// seconds (RedisStore) or on this process at once (FileStore).
//
// Put validates r (errors wrap ErrInvalidCustomer and name the field),
// hashes a plaintext Password, and stores r: with create it fails with
// ErrCustomerExists if the user exists, without it with ErrUnknownCustomer
// if not. Get and Delete fail with ErrUnknownCustomer. List is sorted by
// user name.
type Admin interface {
	Put(ctx context.Context, r CustomerRecord, create bool) error
	Get(ctx context.Context, user string) (CustomerRecord, error)
	Delete(ctx context.Context, user string) error
	List(ctx context.Context) ([]CustomerRecord, error)
}

// Validate checks r. knownPool, if not nil, rejects pools that do not exist
// (auth does not know the pools; the caller does). The error names the
// field and wraps ErrInvalidCustomer.
func (r CustomerRecord) Validate(knownPool func(pool string) bool) error {
	_, _, err := r.build("")
	if err != nil {
		return err
	}
	if knownPool != nil {
		for i, p := range r.Pools {
			if !knownPool(strings.ToLower(p)) {
				return &FieldError{Field: fmt.Sprintf("pools[%d]", i), Msg: fmt.Sprintf("unknown pool %q", strings.ToLower(p))}
			}
		}
	}
	return nil
}

// Customer returns the Customer r describes, or r's validation error.
func (r CustomerRecord) Customer() (*Customer, error) {
	c, _, err := r.build("")
	return c, err
}

// fieldErr returns a FieldError for field under prefix.
func fieldErr(prefix, field, format string, args ...any) *FieldError {
	f := field
	switch {
	case prefix == "":
	case field == "":
		f = prefix
	default:
		f = prefix + "." + field
	}
	return &FieldError{Field: f, Msg: fmt.Sprintf(format, args...)}
}

// build validates r and returns its Customer and parsed hash (nil for a
// plaintext password). Error fields start with prefix.
func (r CustomerRecord) build(prefix string) (*Customer, *passwordHash, error) {
	if !validUser(r.User) {
		return nil, nil, fieldErr(prefix, "user", "%q %s", clip(r.User), userRuleText)
	}
	var hash *passwordHash
	switch {
	case r.Password != "" && r.PasswordHash != "":
		return nil, nil, fieldErr(prefix, "", "want one of password and password_hash, not both")
	case r.Password != "":
		if len(r.Password) > maxPasswordLen {
			return nil, nil, fieldErr(prefix, "password", "longer than %d bytes", maxPasswordLen)
		}
	case r.PasswordHash != "":
		h, err := parseHash(r.PasswordHash)
		if err != nil {
			return nil, nil, fieldErr(prefix, "password_hash", "%v", err)
		}
		hash = &h
	default:
		return nil, nil, fieldErr(prefix, "", "want password or password_hash")
	}

	c := &Customer{User: r.User, Disabled: r.Disabled, MaxConns: r.MaxConns,
		RatePerSec: r.RatePerSec, RateBurst: r.RateBurst, QuotaBytes: r.QuotaBytes}
	if r.Expires != "" {
		t, err := parseExpiry(r.Expires)
		if err != nil {
			return nil, nil, fieldErr(prefix, "expires", "%q is not an RFC 3339 time (2027-01-31T00:00:00Z) or a date (2027-01-31, midnight UTC)", clip(r.Expires))
		}
		c.Expires = t
	}
	if len(r.Pools) == 0 {
		return nil, nil, fieldErr(prefix, "pools", "want at least one pool")
	}
	for j, p := range r.Pools {
		if !validName(p) {
			return nil, nil, fieldErr(prefix, fmt.Sprintf("pools[%d]", j), "%q %s", clip(p), nameRuleText)
		}
		p = strings.ToLower(p)
		if slices.Contains(c.Pools, p) {
			return nil, nil, fieldErr(prefix, fmt.Sprintf("pools[%d]", j), "%q listed twice", p)
		}
		c.Pools = append(c.Pools, p)
	}
	c.DefaultPool = c.Pools[0]
	if r.DefaultPool != "" {
		dp := strings.ToLower(r.DefaultPool)
		if !c.AllowsPool(dp) {
			return nil, nil, fieldErr(prefix, "default_pool", "%q is not one of pools %v", clip(r.DefaultPool), c.Pools)
		}
		c.DefaultPool = dp
	}
	for j, a := range r.AllowIPs {
		p, err := parsePrefix(a)
		if err != nil {
			return nil, nil, fieldErr(prefix, fmt.Sprintf("allow_ips[%d]", j), "%q is not an IP address or CIDR", clip(a))
		}
		c.AllowIPs = append(c.AllowIPs, p)
	}
	if r.MaxConns < 0 {
		return nil, nil, fieldErr(prefix, "max_conns", "must not be negative")
	}
	if r.RatePerSec < 0 || math.IsNaN(r.RatePerSec) || math.IsInf(r.RatePerSec, 0) || r.RatePerSec > 1e6 {
		return nil, nil, fieldErr(prefix, "rate_per_sec", "want 0 (unlimited) to 1000000 requests per second")
	}
	if r.RateBurst < 0 || r.RateBurst > 1e6 {
		return nil, nil, fieldErr(prefix, "rate_burst", "want 0 (default) to 1000000")
	}
	if r.QuotaBytes < 0 {
		return nil, nil, fieldErr(prefix, "quota_bytes", "must not be negative")
	}
	return c, hash, nil
}

// normalized returns r as stored by Put: pools lower-cased, a plaintext
// password replaced by its argon2id hash.
func (r CustomerRecord) normalized() (CustomerRecord, error) {
	r.Pools = slices.Clone(r.Pools)
	for i, p := range r.Pools {
		r.Pools[i] = strings.ToLower(p)
	}
	r.DefaultPool = strings.ToLower(r.DefaultPool)
	r.AllowIPs = slices.Clone(r.AllowIPs)
	if r.Password != "" {
		h, err := HashPassword(r.Password)
		if err != nil {
			return r, err
		}
		r.Password, r.PasswordHash = "", h
	}
	return r, nil
}

// burst returns the GCRA burst of c.
func (c *Customer) burst() int {
	if c.RateBurst > 0 {
		return c.RateBurst
	}
	return max(1, int(math.Ceil(c.RatePerSec)))
}
