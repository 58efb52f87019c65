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
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/farmgate/farmgate/internal/yamlerr"
)

// FileStore is the customer store read from a YAML file: the embedded
// default for a single gateway and the demo. It is safe for concurrent use.
// A FileStore opened with OpenFile is also an Admin: Put and Delete change
// it in memory and write the file back atomically (a temporary file renamed
// over it; comments in the file are not kept). Two processes writing the
// same file at once are not coordinated.
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
//	    rate_per_sec: 50          # optional; default unlimited
//	    rate_burst: 100           # optional; default max(1, rate_per_sec)
//	    quota_bytes: 10737418240  # optional, per calendar month; default none
//	    expires: 2027-01-01T00:00:00Z # optional; default never
type FileStore struct {
	name string // names the file in errors
	path string // where Put and Delete write; "" = not writable
	cfg  Config

	mu    sync.RWMutex // guards users, order, dummy and the file
	users map[string]*record
	order []*record // as in the file
	// dummy is verified against when the user is unknown or has a plaintext
	// password, so that every cache miss costs one slow hash whenever the
	// file holds any hash: it is the first hashed customer's hash, and the
	// result is thrown away. nil when the file holds no hash.
	dummy *passwordHash

	mac      *macer
	cache    *credCache
	flights  *flights
	throttle *memThrottle

	// dummySecret is compared against for an unknown user, as a plaintext
	// password would be.
	dummySecret credKey
}

var (
	_ Authenticator = (*FileStore)(nil)
	_ Admin         = (*FileStore)(nil)
)

// record is one customer and their credential.
type record struct {
	c      *Customer
	hash   *passwordHash // nil for a plaintext password
	secret credKey       // keyed hash of the plaintext password
	rec    CustomerRecord
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
	RatePerSec   float64  `yaml:"rate_per_sec"`
	RateBurst    int      `yaml:"rate_burst"`
	QuotaBytes   int64    `yaml:"quota_bytes"`
	Expires      string   `yaml:"expires"`
}

// record returns fc as a CustomerRecord, or the error of an empty password.
func (fc *fileCustomer) record(field string) (CustomerRecord, error) {
	r := CustomerRecord{User: fc.User, Pools: fc.Pools, DefaultPool: fc.DefaultPool, Disabled: fc.Disabled,
		AllowIPs: fc.AllowIPs, MaxConns: fc.MaxConns, RatePerSec: fc.RatePerSec, RateBurst: fc.RateBurst,
		QuotaBytes: fc.QuotaBytes, Expires: fc.Expires}
	switch {
	case fc.Password != nil && fc.PasswordHash != nil:
		return r, fmt.Errorf("%s: want one of password and password_hash, not both", field)
	case fc.Password != nil && *fc.Password == "":
		return r, fmt.Errorf("%s.password: must not be empty", field)
	case fc.PasswordHash != nil && *fc.PasswordHash == "":
		return r, fmt.Errorf("%s.password_hash: parsing password hash: empty", field)
	case fc.Password != nil:
		r.Password = *fc.Password
	case fc.PasswordHash != nil:
		r.PasswordHash = *fc.PasswordHash
	}
	return r, nil
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

// OpenFile reads the customer file at path for managing it: unlike
// LoadFile, a missing or empty file is an empty store, and Put and Delete
// write the file back.
func OpenFile(path string, cfg Config) (*FileStore, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading customers: %w", err)
	}
	s, err := parseFile(data, path, cfg, true)
	if err != nil {
		return nil, err
	}
	s.path = path
	return s, nil
}

// ParseFile parses a customer file's contents with DefaultConfig; name
// (usually the path) starts every error message.
func ParseFile(data []byte, name string) (*FileStore, error) {
	return ParseFileConfig(data, name, Config{})
}

// ParseFileConfig parses a customer file's contents with cfg; zero fields
// of cfg take their defaults.
func ParseFileConfig(data []byte, name string, cfg Config) (*FileStore, error) {
	return parseFile(data, name, cfg, false)
}

func parseFile(data []byte, name string, cfg Config, allowEmpty bool) (*FileStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()

	var doc fileDoc
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && !(allowEmpty && errors.Is(err, io.EOF)) {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: customers: no customers defined", name)
		}
		return nil, yamlerr.Wrap(name, data, err, fileDoc{})
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: want a single YAML document", name)
	}
	if len(doc.Customers) == 0 && !allowEmpty {
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
		cache:   newCredCache(cfg.CacheTTL, 0, cfg.Now),
		flights: newFlights(cfg.MaxVerifies),
	}
	s.throttle = newMemThrottle(&s.cfg, cfg.Logger.With("component", "auth", "store", "file"))
	s.dummySecret = mac.secret("\x00farmgate dummy secret")
	where := make(map[string]int, len(doc.Customers))
	plaintext := 0
	for i := range doc.Customers {
		fc := &doc.Customers[i]
		field := fmt.Sprintf("customers[%d]", i)
		cr, err := fc.record(field)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", customerAt(name, data, i), err)
		}
		r, err := s.buildRecord(cr, field)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", customerAt(name, data, i), err)
		}
		if j, dup := where[fc.User]; dup {
			return nil, fmt.Errorf("%s: %s.user: %q already defined at customers[%d]", customerAt(name, data, i), field, fc.User, j)
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

// customerAt names the file and the line where customer i begins
// ("customers.yaml:12"), for an error about that customer; just the file if
// the line cannot be found. It parses data again: errors are rare.
func customerAt(name string, data []byte, i int) string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 {
		return name
	}
	m := root.Content[0]
	for k := 0; m.Kind == yaml.MappingNode && k+1 < len(m.Content); k += 2 {
		if seq := m.Content[k+1]; m.Content[k].Value == "customers" && seq.Kind == yaml.SequenceNode && i < len(seq.Content) {
			return fmt.Sprintf("%s:%d", name, seq.Content[i].Line)
		}
	}
	return name
}

// buildRecord validates one customer entry; errors start with field.
func (s *FileStore) buildRecord(cr CustomerRecord, field string) (*record, error) {
	c, hash, err := cr.build(field)
	if err != nil {
		return nil, err
	}
	r := &record{c: c, hash: hash, rec: cr}
	if hash == nil {
		r.secret = s.mac.secret(cr.Password)
	}
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

// Authenticate checks user and password; it is AuthenticateFrom with no
// client address.
func (s *FileStore) Authenticate(ctx context.Context, user, password string) (*Customer, error) {
	return s.AuthenticateFrom(ctx, user, password, netip.Addr{})
}

// AuthenticateFrom checks user and password for a client at client (the
// zero Addr if unknown). A pair verified within Config.CacheTTL is answered
// from memory without allocating; otherwise failed logins are throttled
// (ErrLoginThrottled, per client address and per client address and user,
// in this process; see Config.MaxFailedLogins) and the password is hashed (at most Config.MaxVerifies at once, one per pair).
// An unknown user costs the same as a wrong password. A valid client
// outside the customer's AllowIPs is refused with ErrBadCredentials.
func (s *FileStore) AuthenticateFrom(ctx context.Context, user, password string, client netip.Addr) (*Customer, error) {
	if len(password) > maxPasswordLen || len(user) > MaxNameLen {
		return nil, fmt.Errorf("authenticating %q: user name or password too long: %w", clip(user), ErrBadCredentials)
	}
	k := s.mac.pair(user, password)
	now := s.cfg.Now()
	if e, st := s.cache.get(k, now); st == cacheFresh {
		return admit(e.c, now, client)
	}
	if s.throttle.throttled(user, client) {
		s.cfg.throttled()
		return nil, fmt.Errorf("authenticating %q: %w", user, ErrLoginThrottled)
	}
	c, err := s.flights.do(ctx, k, func() (*Customer, error) { return s.check(k, user, password) })
	if err != nil {
		if errors.Is(err, ErrBadCredentials) {
			s.throttle.fail(user, client)
		}
		return nil, err
	}
	return admit(c, now, client)
}

// admit returns c if it may log in at now from client, else an error
// wrapping ErrBadCredentials. It does not allocate when it admits.
func admit(c *Customer, now time.Time, client netip.Addr) (*Customer, error) {
	if !c.active(now) {
		return nil, fmt.Errorf("authenticating %q: account disabled or expired: %w", c.User, ErrBadCredentials)
	}
	if client.IsValid() && !c.AllowsIP(client) {
		return nil, fmt.Errorf("authenticating %q: client address %s not allowed: %w", c.User, client, ErrBadCredentials)
	}
	return c, nil
}

// check verifies password for user the slow way and caches a success.
func (s *FileStore) check(k credKey, user, password string) (*Customer, error) {
	s.mu.RLock()
	r, ok := s.users[user]
	dummy := s.dummy
	s.mu.RUnlock()
	if !ok {
		sec := s.mac.secret(password)
		subtle.ConstantTimeCompare(sec[:], s.dummySecret[:])
		if dummy != nil {
			dummy.verify(password)
		}
		return nil, fmt.Errorf("authenticating %q: unknown user: %w", user, ErrBadCredentials)
	}
	var match bool
	if r.hash != nil {
		match = r.hash.verify(password)
	} else {
		sec := s.mac.secret(password)
		match = subtle.ConstantTimeCompare(sec[:], r.secret[:]) == 1
		if dummy != nil {
			dummy.verify(password)
		}
	}
	if !match {
		return nil, fmt.Errorf("authenticating %q: wrong password: %w", user, ErrBadCredentials)
	}
	if !r.c.active(s.cfg.Now()) {
		return nil, fmt.Errorf("authenticating %q: account disabled or expired: %w", user, ErrBadCredentials)
	}
	s.mu.RLock()
	current := s.users[user] == r
	s.mu.RUnlock()
	if current { // not replaced by a Put while we hashed
		s.cache.put(k, r.c, 0)
	}
	return r.c, nil
}

// Customer returns the customer named user, for read-only use.
func (s *FileStore) Customer(user string) (*Customer, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.users[user]
	if !ok {
		return nil, false
	}
	return r.c, true
}

// Allows reports whether user is in the file and may log in now (not
// disabled, not expired).
func (s *FileStore) Allows(user string) bool {
	c, ok := s.Customer(user)
	return ok && c.active(s.cfg.Now())
}

// Users returns every user name, in file order.
func (s *FileStore) Users() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
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
	s.mu.RLock()
	defer s.mu.RUnlock()
	for i, r := range s.order {
		for j, p := range r.c.Pools {
			if !known(p) {
				return fmt.Errorf("%s: customers[%d].pools[%d]: unknown pool %q", s.name, i, j, p)
			}
		}
	}
	return nil
}
