package auth

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FileStore is the customer store read from a YAML file: the embedded
// default for a single gateway and the demo. It is read once and never
// changes; it is safe for concurrent use.
//
// The file looks like this:
//
//	customers:
//	  - user: demo
//	    password: demo            # plaintext (demo/dev), or:
//	    password_hash: "$argon2id$v=19$m=19456,t=2,p=1$..."
//	    pools: [resi, dc]
//	    default_pool: resi        # optional; default first of pools
//	    disabled: false           # optional
//	    allow_ips: [203.0.113.0/24] # optional; default anywhere
//	    max_conns: 100            # optional; default no cap
//	    expires: 2027-01-01T00:00:00Z # optional; default never
type FileStore struct {
	name  string
	cfg   Config
	users map[string]*record
	order []*record // as in the file

	mac     *macer
	cache   *credCache
	flights *flights

	// dummy is verified against when the user is unknown or has a plaintext
	// password, so that every cache miss costs one slow hash whenever the
	// file holds any hash: it is the first hashed customer's hash, and the
	// result is thrown away. nil when the file holds no hash.
	dummy *passwordHash
	// dummySecret is compared against for an unknown user, as a plaintext
	// password would be.
	dummySecret credKey
}

var _ Authenticator = (*FileStore)(nil)

// record is one customer and their credential.
type record struct {
	c      *Customer
	hash   *passwordHash // nil for a plaintext password
	secret credKey       // keyed hash of the plaintext password
}

// fileDoc is the YAML file.
type fileDoc struct {
	Customers []fileCustomer `yaml:"customers"`
}

type fileCustomer struct {
	User         string   `yaml:"user"`
	Password     *string  `yaml:"password"`
	PasswordHash *string  `yaml:"password_hash"`
	Pools        []string `yaml:"pools"`
	DefaultPool  string   `yaml:"default_pool"`
	Disabled     bool     `yaml:"disabled"`
	AllowIPs     []string `yaml:"allow_ips"`
	MaxConns     int      `yaml:"max_conns"`
	Expires      string   `yaml:"expires"`
}

// LoadFile reads the customer file at path with DefaultConfig. Errors name
// the file and the field.
func LoadFile(path string) (*FileStore, error) {
	return LoadFileConfig(path, Config{})
}

// LoadFileConfig reads the customer file at path with cfg.
func LoadFileConfig(path string, cfg Config) (*FileStore, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading customers: %w", err)
	}
	return ParseFileConfig(data, path, cfg)
}

// ParseFile parses a customer file's contents with DefaultConfig; name
// (usually the path) starts every error message.
func ParseFile(data []byte, name string) (*FileStore, error) {
	return ParseFileConfig(data, name, Config{})
}

// ParseFileConfig parses a customer file's contents with cfg; zero fields
// of cfg take their defaults.
func ParseFileConfig(data []byte, name string, cfg Config) (*FileStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: customers: no customers defined", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: want a single YAML document", name)
	}
	if len(doc.Customers) == 0 {
		return nil, fmt.Errorf("%s: customers: no customers defined", name)
	}

	mac, err := newMacer()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &FileStore{
		name:    name,
		cfg:     cfg,
		users:   make(map[string]*record, len(doc.Customers)),
		mac:     mac,
		cache:   newCredCache(cfg.CacheTTL, cfg.Now),
		flights: newFlights(cfg.MaxVerifies),
	}
	s.dummySecret = mac.secret("\x00farmgate dummy secret")
	where := make(map[string]int, len(doc.Customers))
	plaintext := 0
	for i := range doc.Customers {
		fc := &doc.Customers[i]
		field := fmt.Sprintf("customers[%d]", i)
		r, err := s.buildRecord(fc, field)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if j, dup := where[fc.User]; dup {
			return nil, fmt.Errorf("%s: %s.user: %q already defined at customers[%d]", name, field, fc.User, j)
		}
		where[fc.User] = i
		s.users[fc.User] = r
		s.order = append(s.order, r)
		if r.hash == nil {
			plaintext++
		} else if s.dummy == nil {
			s.dummy = r.hash
		}
	}
	if plaintext > 0 {
		cfg.Logger.Warn("customers with plaintext passwords; use password_hash outside demos",
			"component", "auth", "file", name, "plaintext_users", plaintext)
	}
	return s, nil
}

// buildRecord validates one customer entry; errors start with field.
func (s *FileStore) buildRecord(fc *fileCustomer, field string) (*record, error) {
	if !validUser(fc.User) {
		return nil, fmt.Errorf("%s.user: %q %s", field, clip(fc.User), userRuleText)
	}
	r := &record{}
	switch {
	case fc.Password != nil && fc.PasswordHash != nil:
		return nil, fmt.Errorf("%s: want one of password and password_hash, not both", field)
	case fc.Password != nil:
		if *fc.Password == "" {
			return nil, fmt.Errorf("%s.password: must not be empty", field)
		}
		if len(*fc.Password) > maxPasswordLen {
			return nil, fmt.Errorf("%s.password: longer than %d bytes", field, maxPasswordLen)
		}
		r.secret = s.mac.secret(*fc.Password)
	case fc.PasswordHash != nil:
		h, err := parseHash(*fc.PasswordHash)
		if err != nil {
			return nil, fmt.Errorf("%s.password_hash: %w", field, err)
		}
		r.hash = &h
	default:
		return nil, fmt.Errorf("%s: want password or password_hash", field)
	}

	c := &Customer{User: fc.User, Disabled: fc.Disabled, MaxConns: fc.MaxConns}
	if fc.Expires != "" {
		t, err := parseExpiry(fc.Expires)
		if err != nil {
			return nil, fmt.Errorf("%s.expires: %q is not an RFC 3339 time (2027-01-31T00:00:00Z) or a date (2027-01-31, midnight UTC)", field, clip(fc.Expires))
		}
		c.Expires = t
	}
	if len(fc.Pools) == 0 {
		return nil, fmt.Errorf("%s.pools: want at least one pool", field)
	}
	for j, p := range fc.Pools {
		if !validName(p) {
			return nil, fmt.Errorf("%s.pools[%d]: %q %s", field, j, clip(p), nameRuleText)
		}
		p = strings.ToLower(p)
		if slices.Contains(c.Pools, p) {
			return nil, fmt.Errorf("%s.pools[%d]: %q listed twice", field, j, p)
		}
		c.Pools = append(c.Pools, p)
	}
	c.DefaultPool = c.Pools[0]
	if fc.DefaultPool != "" {
		dp := strings.ToLower(fc.DefaultPool)
		if !c.AllowsPool(dp) {
			return nil, fmt.Errorf("%s.default_pool: %q is not one of pools %v", field, clip(fc.DefaultPool), c.Pools)
		}
		c.DefaultPool = dp
	}
	for j, a := range fc.AllowIPs {
		p, err := parsePrefix(a)
		if err != nil {
			return nil, fmt.Errorf("%s.allow_ips[%d]: %q is not an IP address or CIDR", field, j, clip(a))
		}
		c.AllowIPs = append(c.AllowIPs, p)
	}
	if fc.MaxConns < 0 {
		return nil, fmt.Errorf("%s.max_conns: must not be negative", field)
	}
	r.c = c
	return r, nil
}

// parseExpiry parses an RFC 3339 time or a date, midnight UTC.
func parseExpiry(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

// parsePrefix parses a CIDR or a bare address (a /32 or /128), masked and
// with IPv4-mapped IPv6 unmapped.
func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, errors.New("IPv4-mapped prefix shorter than /96")
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Authenticate checks user and password. A pair verified within
// Config.CacheTTL is answered from memory without allocating; otherwise the
// password is hashed (at most Config.MaxVerifies at once, one per pair).
// An unknown user costs the same as a wrong password.
func (s *FileStore) Authenticate(ctx context.Context, user, password string) (*Customer, error) {
	if len(password) > maxPasswordLen || len(user) > MaxNameLen {
		return nil, fmt.Errorf("authenticating %q: user name or password too long: %w", clip(user), ErrBadCredentials)
	}
	k := s.mac.pair(user, password)
	now := s.cfg.Now()
	if c, ok := s.cache.get(k, now); ok {
		if c.active(now) {
			return c, nil
		}
		return nil, fmt.Errorf("authenticating %q: account disabled or expired: %w", user, ErrBadCredentials)
	}
	return s.flights.do(ctx, k, func() (*Customer, error) { return s.check(k, user, password) })
}

// check verifies password for user the slow way and caches a success.
func (s *FileStore) check(k credKey, user, password string) (*Customer, error) {
	r, ok := s.users[user]
	if !ok {
		sec := s.mac.secret(password)
		subtle.ConstantTimeCompare(sec[:], s.dummySecret[:])
		if s.dummy != nil {
			s.dummy.verify(password)
		}
		return nil, fmt.Errorf("authenticating %q: unknown user: %w", user, ErrBadCredentials)
	}
	var match bool
	if r.hash != nil {
		match = r.hash.verify(password)
	} else {
		sec := s.mac.secret(password)
		match = subtle.ConstantTimeCompare(sec[:], r.secret[:]) == 1
		if s.dummy != nil {
			s.dummy.verify(password)
		}
	}
	if !match {
		return nil, fmt.Errorf("authenticating %q: wrong password: %w", user, ErrBadCredentials)
	}
	if !r.c.active(s.cfg.Now()) {
		return nil, fmt.Errorf("authenticating %q: account disabled or expired: %w", user, ErrBadCredentials)
	}
	s.cache.put(k, r.c)
	return r.c, nil
}

// Customer returns the customer named user, for read-only use.
func (s *FileStore) Customer(user string) (*Customer, bool) {
	r, ok := s.users[user]
	if !ok {
		return nil, false
	}
	return r.c, true
}

// Users returns every user name, in file order.
func (s *FileStore) Users() []string {
	users := make([]string, 0, len(s.order))
	for _, r := range s.order {
		users = append(users, r.c.User)
	}
	return users
}

// CheckPools reports the first customer pool that known rejects, naming the
// file and field, e.g. `customers.yaml: customers[1].pools[0]: unknown pool "x"`.
// The gateway calls it once it knows its pools; auth itself does not know them.
func (s *FileStore) CheckPools(known func(pool string) bool) error {
	for i, r := range s.order {
		for j, p := range r.c.Pools {
			if !known(p) {
				return fmt.Errorf("%s: customers[%d].pools[%d]: unknown pool %q", s.name, i, j, p)
			}
		}
	}
	return nil
}
