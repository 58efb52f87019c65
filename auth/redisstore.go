package auth

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is the customer store shared by every gateway: customers live
// in Redis (one hash, PREFIX+"customers", user → JSON CustomerRecord), and
// every write is announced on the channel PREFIX+"invalidate" so that each
// gateway drops that user's cached credentials within about a second.
// Run owns the subscriber; without it, changes are seen after CacheTTL.
//
// When Redis is down or slower than Config.Timeout, the store fails
// static: a pair verified before is honoured from the cache for up to
// Config.MaxStale past its TTL; anything else gets an error wrapping
// ErrStoreUnavailable. The outage is logged once when it starts and once
// when it ends. It is safe for concurrent use.
//
// Redis keys (PREFIX defaults to "farmgate:"): PREFIX+"customers",
// PREFIX+"fail:ipu:"+ADDR+"|"+USER and PREFIX+"fail:ip:"+ADDR (failed-login
// counters, shared by every gateway; see Config.MaxFailedLogins), channel
// PREFIX+"invalidate" (message: a user name, or "*" for all).
type RedisStore struct {
	cfg     Config
	rdb     redis.UniversalClient
	logger  *slog.Logger
	outage  *outage
	hashKey string // PREFIX+"customers"
	channel string // PREFIX+"invalidate"

	mac         *macer
	cache       *credCache
	flights     *flights
	dummy       passwordHash // verified against for an unknown user
	dummySecret credKey

	subscriptions atomic.Int64 // successful (re)subscriptions, for tests
	onChange      func(user string)
}

// OnChange sets f to be told of every change to a customer this gateway
// makes or hears of from another: a user name, or "*" when any may have
// changed (each time the subscription starts). Set it before Run. f runs
// on the store's own goroutines and must return quickly.
func (s *RedisStore) OnChange(f func(user string)) { s.onChange = f }

func (s *RedisStore) changed(user string) {
	if s.onChange != nil {
		s.onChange(user)
	}
}

// Allows reports whether user exists and may log in now (not disabled, not
// expired); an error means Redis could not tell.
func (s *RedisStore) Allows(ctx context.Context, user string) (bool, error) {
	r, err := s.Get(ctx, user)
	if errors.Is(err, ErrUnknownCustomer) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c, err := r.Customer()
	if err != nil {
		return false, err
	}
	return c.active(s.cfg.Now()), nil
}

var (
	_ Authenticator = (*RedisStore)(nil)
	_ Admin         = (*RedisStore)(nil)
)

// NewRedisStore returns a store on client (a single node, Sentinel or
// Cluster client) with cfg; zero fields of cfg take their defaults.
func NewRedisStore(client redis.UniversalClient, cfg Config) (*RedisStore, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	mac, err := newMacer()
	if err != nil {
		return nil, err
	}
	var pw [16]byte
	for i := range pw {
		pw[i] = byte('a' + rand.IntN(26))
	}
	dh, err := HashPassword(string(pw[:]))
	if err != nil {
		return nil, err
	}
	dummy, err := parseHash(dh)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger.With("component", "auth", "store", "redis")
	return &RedisStore{
		cfg:         cfg,
		rdb:         client,
		logger:      logger,
		outage:      newOutage(logger, cfg.Now),
		hashKey:     cfg.Prefix + "customers",
		channel:     cfg.Prefix + "invalidate",
		mac:         mac,
		cache:       newCredCache(cfg.CacheTTL, cfg.MaxStale, cfg.Now),
		flights:     newFlights(cfg.MaxVerifies),
		dummy:       dummy,
		dummySecret: mac.secret("\x00farmgate dummy secret"),
	}, nil
}

// Authenticate checks user and password; it is AuthenticateFrom with no
// client address.
func (s *RedisStore) Authenticate(ctx context.Context, user, password string) (*Customer, error) {
	return s.AuthenticateFrom(ctx, user, password, netip.Addr{})
}

// AuthenticateFrom checks user and password for a client at client (the
// zero Addr if unknown). A pair verified within Config.CacheTTL is answered
// from memory without allocating or calling Redis. Otherwise one pipelined
// Redis round trip fetches the customer and the failed-login counters;
// past Config.MaxFailedLogins for the user from this client's address, or
// Config.MaxFailedLoginsPerClient for any user from it, it answers
// ErrLoginThrottled without checking the password. A stale cached pair
// whose stored password has not changed is renewed without hashing.
// A valid client outside the customer's AllowIPs gets ErrBadCredentials.
func (s *RedisStore) AuthenticateFrom(ctx context.Context, user, password string, client netip.Addr) (*Customer, error) {
	if len(password) > maxPasswordLen || len(user) > MaxNameLen {
		return nil, fmt.Errorf("authenticating %q: user name or password too long: %w", clip(user), ErrBadCredentials)
	}
	k := s.mac.pair(user, password)
	now := s.cfg.Now()
	e, st := s.cache.get(k, now)
	if st == cacheFresh {
		return admit(e.c, now, client)
	}
	c, err := s.flights.do(ctx, k, func() (*Customer, error) { return s.check(ctx, k, user, password, client, e, st) })
	if err != nil {
		return nil, err
	}
	return admit(c, s.cfg.Now(), client)
}

// check asks Redis and verifies the password if it must.
func (s *RedisStore) check(ctx context.Context, k credKey, user, password string, client netip.Addr, e cacheEntry, st cacheState) (*Customer, error) {
	raw, throttled, err := s.fetch(ctx, user, client)
	if err != nil {
		if st == cacheStale { // fail-static: verified before, Redis unreachable
			return e.c, nil
		}
		return nil, fmt.Errorf("authenticating %q: %w: %w", user, ErrStoreUnavailable, err)
	}
	if throttled {
		s.cfg.throttled()
		return nil, fmt.Errorf("authenticating %q: %w", user, ErrLoginThrottled)
	}
	if raw == "" {
		sec := s.mac.secret(password)
		subtle.ConstantTimeCompare(sec[:], s.dummySecret[:])
		s.dummy.verify(password)
		s.failed(ctx, user, client)
		return nil, fmt.Errorf("authenticating %q: unknown user: %w", user, ErrBadCredentials)
	}
	var r CustomerRecord
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		s.logger.Warn("unreadable customer record in redis", "user", user, "err", err)
		return nil, fmt.Errorf("authenticating %q: customer record: %w", user, ErrBadCredentials)
	}
	c, hash, err := r.build("")
	if err != nil || r.User != user {
		s.logger.Warn("invalid customer record in redis", "user", user, "err", err)
		return nil, fmt.Errorf("authenticating %q: customer record invalid: %w", user, ErrBadCredentials)
	}
	fp := s.fingerprint(&r)
	var match bool
	switch {
	case st == cacheStale && e.fp == fp:
		match = true // verified against this very password hash before
	case hash != nil:
		match = hash.verify(password)
	default:
		a, b := s.mac.secret(password), s.mac.secret(r.Password)
		match = subtle.ConstantTimeCompare(a[:], b[:]) == 1
		s.dummy.verify(password)
	}
	if !match {
		s.failed(ctx, user, client)
		return nil, fmt.Errorf("authenticating %q: wrong password: %w", user, ErrBadCredentials)
	}
	if !c.active(s.cfg.Now()) {
		return nil, fmt.Errorf("authenticating %q: account disabled or expired: %w", user, ErrBadCredentials)
	}
	s.cache.put(k, c, fp)
	return c, nil
}

// fingerprint identifies the stored password of r (never zero).
func (s *RedisStore) fingerprint(r *CustomerRecord) uint64 {
	h := s.mac.sum('f', r.PasswordHash, r.Password)
	return binary.BigEndian.Uint64(h[:8]) | 1
}

// fetch returns the customer's JSON record ("" if none) and whether a
// login of user from client is throttled, in one round trip.
func (s *RedisStore) fetch(ctx context.Context, user string, client netip.Addr) (string, bool, error) {
	cctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	pipe := s.rdb.Pipeline()
	rec := pipe.HGet(cctx, s.hashKey, user)
	keys := s.cfg.throttleKeys(user, client)
	var fails [len(keys)]*redis.StringCmd
	for i, k := range keys {
		fails[i] = pipe.Get(cctx, s.cfg.Prefix+"fail:"+k.key)
	}
	_, err := pipe.Exec(cctx)
	if s.outage.observe(ctx, err) || (err != nil && !errors.Is(err, redis.Nil)) {
		return "", false, err
	}
	throttled := false
	for i, f := range fails {
		if n, err := f.Int(); err == nil && n >= keys[i].limit {
			throttled = true
		}
	}
	raw, err := rec.Result()
	if errors.Is(err, redis.Nil) {
		return "", throttled, nil
	}
	return raw, throttled, err
}

// failed counts a failed login of user from client in Redis, and logs a
// bucket this failure fills: the gateway whose INCR reaches the limit logs
// the lockout, once for every gateway. Errors are ignored: the throttle is
// best-effort.
func (s *RedisStore) failed(ctx context.Context, user string, client netip.Addr) {
	cctx, cancel := withTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	pipe := s.rdb.Pipeline()
	keys := s.cfg.throttleKeys(user, client)
	var counts [len(keys)]*redis.IntCmd
	for i, k := range keys {
		key := s.cfg.Prefix + "fail:" + k.key
		counts[i] = pipe.Incr(cctx, key)
		pipe.Do(cctx, "PEXPIRE", key, s.cfg.FailedLoginWindow.Milliseconds(), "NX")
	}
	_, err := pipe.Exec(cctx)
	if s.outage.observe(ctx, err) || err != nil {
		return
	}
	for i, k := range keys {
		if counts[i].Val() == int64(k.limit) {
			logLockout(&s.cfg, s.logger, k, user, client, s.cfg.FailedLoginWindow)
		}
	}
}

// Run subscribes to invalidation messages and drops the named users'
// cached credentials, until ctx ends. It reconnects with backoff; after a
// gap, every cached pair is re-checked with Redis before it is used again
// (it stays usable for fail-static). It returns nil when ctx ends.
func (s *RedisStore) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	gap := false
	for ctx.Err() == nil {
		if s.subscribeOnce(ctx, &gap) {
			backoff = 100 * time.Millisecond
		}
		if ctx.Err() != nil {
			break
		}
		gap = true
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(backoff*2, 5*time.Second)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	return nil
}

// subscribeOnce runs one subscription until it fails; it reports whether
// the subscription was established.
func (s *RedisStore) subscribeOnce(ctx context.Context, gap *bool) (ok bool) {
	defer recoverLoop(s.logger, "invalidation")
	ps := s.rdb.Subscribe(ctx)
	defer ps.Close()
	cctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	err := ps.Subscribe(cctx, s.channel)
	if err == nil {
		_, err = ps.ReceiveTimeout(cctx, s.cfg.Timeout) // the subscribe confirmation
	}
	cancel()
	if s.outage.observe(ctx, err) || err != nil {
		return false
	}
	if *gap {
		s.cache.staleAll() // messages may have been missed
		*gap = false
	}
	// Changes made before this subscription were not heard of here.
	s.changed("*")
	s.subscriptions.Add(1)
	const idle = 10 * time.Second
	for {
		msg, err := ps.ReceiveTimeout(ctx, idle)
		if ctx.Err() != nil {
			return true
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet channel: check the connection is alive.
				pctx, cancel := withTimeout(ctx, s.cfg.Timeout)
				err = ps.Ping(pctx)
				cancel()
				if err == nil {
					continue
				}
			}
			s.outage.observe(ctx, err)
			return true
		}
		switch m := msg.(type) {
		case *redis.Message:
			if m.Payload == "*" {
				s.cache.staleAll()
			} else {
				s.cache.dropUser(m.Payload)
			}
			s.changed(m.Payload)
		case *redis.Pong, *redis.Subscription:
		}
	}
}

// publish announces a change to user's record (best effort: the TTL is the
// backstop) and drops the user's entries here at once.
func (s *RedisStore) publish(ctx context.Context, user string) {
	s.cache.dropUser(user)
	s.changed(user)
	cctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.rdb.Publish(cctx, s.channel, user).Err(); err != nil {
		s.outage.observe(ctx, err)
		s.logger.Warn("publishing customer change failed; other gateways see it after the cache TTL", "user", user, "err", err)
	}
}

// putScript stores a record only if the user exists (set).
var putScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1`)

// Put implements Admin and announces the change to every gateway.
func (s *RedisStore) Put(ctx context.Context, r CustomerRecord, create bool) error {
	if err := r.Validate(nil); err != nil {
		return fmt.Errorf("customer %q: %w", clip(r.User), err)
	}
	r, err := r.normalized()
	if err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("customer %q: encoding: %w", r.User, err)
	}
	cctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var done bool
	if create {
		done, err = s.rdb.HSetNX(cctx, s.hashKey, r.User, data).Result()
	} else {
		var n int64
		n, err = putScript.Run(cctx, s.rdb, []string{s.hashKey}, r.User, data).Int64()
		done = n == 1
	}
	if s.outage.observe(ctx, err) || err != nil {
		return fmt.Errorf("storing customer %q: %w: %w", r.User, ErrStoreUnavailable, err)
	}
	switch {
	case !done && create:
		return fmt.Errorf("customer %q: %w", r.User, ErrCustomerExists)
	case !done:
		return fmt.Errorf("customer %q: %w", r.User, ErrUnknownCustomer)
	}
	s.publish(ctx, r.User)
	return nil
}

// Get implements Admin.
func (s *RedisStore) Get(ctx context.Context, user string) (CustomerRecord, error) {
	cctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	raw, err := s.rdb.HGet(cctx, s.hashKey, user).Result()
	s.outage.observe(ctx, err)
	if errors.Is(err, redis.Nil) {
		return CustomerRecord{}, fmt.Errorf("customer %q: %w", clip(user), ErrUnknownCustomer)
	}
	if err != nil {
		return CustomerRecord{}, fmt.Errorf("reading customer %q: %w: %w", clip(user), ErrStoreUnavailable, err)
	}
	var r CustomerRecord
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return CustomerRecord{}, fmt.Errorf("customer %q: decoding record: %w", user, err)
	}
	return r, nil
}

// Delete implements Admin and announces the change to every gateway.
func (s *RedisStore) Delete(ctx context.Context, user string) error {
	cctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	n, err := s.rdb.HDel(cctx, s.hashKey, user).Result()
	if s.outage.observe(ctx, err) || err != nil {
		return fmt.Errorf("deleting customer %q: %w: %w", clip(user), ErrStoreUnavailable, err)
	}
	if n == 0 {
		return fmt.Errorf("customer %q: %w", clip(user), ErrUnknownCustomer)
	}
	s.publish(ctx, user)
	return nil
}

// List implements Admin. Records that cannot be decoded are skipped and
// logged.
func (s *RedisStore) List(ctx context.Context) ([]CustomerRecord, error) {
	cctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	all, err := s.rdb.HGetAll(cctx, s.hashKey).Result()
	if s.outage.observe(ctx, err) || err != nil {
		return nil, fmt.Errorf("listing customers: %w: %w", ErrStoreUnavailable, err)
	}
	out := make([]CustomerRecord, 0, len(all))
	for user, raw := range all {
		var r CustomerRecord
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			s.logger.Warn("unreadable customer record in redis", "user", user, "err", err)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b CustomerRecord) int { return strings.Compare(a.User, b.User) })
	return out, nil
}
