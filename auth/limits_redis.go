package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// LimiterConfig tunes a RedisLimiter. The zero value is usable: every zero
// field takes its default.
type LimiterConfig struct {
	// Prefix starts every Redis key. Default: "farmgate:".
	Prefix string
	// Timeout bounds each Redis call. Default: 500ms.
	Timeout time.Duration
	// GatewayID names this gateway's lease on tunnel counts; unique per
	// running gateway. Default: hostname, pid and a random suffix.
	GatewayID string
	// LeaseTTL is how long this gateway's tunnel counts outlive its last
	// lease refresh (Run refreshes every LeaseTTL/3): a crashed gateway's
	// tunnels stop counting at most LeaseTTL after it died. Default: 45s.
	LeaseTTL time.Duration
	// FlushInterval is how often Run gives back to Redis, all customers in
	// one pipeline, the tunnel slots and rate tokens Admit reserved and did
	// not use, including the slots of tunnels closed here: other gateways
	// see them free up to FlushInterval (plus a tenth of jitter) late; this
	// gateway reuses them at once. Default: 100ms.
	FlushInterval time.Duration
	// Prefetch is the most tunnel slots and rate tokens beyond the one asked
	// for that Admit reserves in one round trip; it asks for no more than
	// the customer's Admit calls here in the previous FlushInterval, and
	// Redis grants no more than half of what is left. 0 means the default;
	// negative: never reserve ahead (one round trip per Admit). Default: 32.
	Prefetch int
	// Now is the clock of the in-memory fallback. Default: time.Now.
	Now func() time.Time
	// Logger receives outages. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultLimiterConfig returns the configuration with every default filled in.
func DefaultLimiterConfig() LimiterConfig {
	host, _ := os.Hostname()
	return LimiterConfig{
		Prefix:        DefaultPrefix,
		Timeout:       500 * time.Millisecond,
		GatewayID:     fmt.Sprintf("%s-%d-%08x", host, os.Getpid(), rand.Uint32()),
		LeaseTTL:      45 * time.Second,
		FlushInterval: 100 * time.Millisecond,
		Prefetch:      32,
		Now:           time.Now,
		Logger:        slog.Default(),
	}
}

// Validate reports the first field that is wrong, by name.
func (c LimiterConfig) Validate() error {
	switch {
	case c.Timeout < 0:
		return errors.New("limiter config: Timeout: must not be negative")
	case c.LeaseTTL < 0:
		return errors.New("limiter config: LeaseTTL: must not be negative")
	case c.LeaseTTL > 0 && c.LeaseTTL < 300*time.Millisecond:
		return errors.New("limiter config: LeaseTTL: want at least 300ms")
	case c.FlushInterval < 0:
		return errors.New("limiter config: FlushInterval: must not be negative")
	}
	return nil
}

func (c LimiterConfig) withDefaults() LimiterConfig {
	d := DefaultLimiterConfig()
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.GatewayID == "" {
		c.GatewayID = d.GatewayID
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = d.LeaseTTL
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.Prefetch == 0 {
		c.Prefetch = d.Prefetch
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// RedisLimiter enforces customers' concurrent tunnels (Customer.MaxConns)
// and request rate (Customer.RatePerSec, RateBurst) across every gateway
// through Redis; MemoryLimiter does it in one process. It is safe for
// concurrent use.
//
// Tunnels: PREFIX+"conns:{USER}" is a hash gateway id → open tunnels and
// PREFIX+"connlease:{USER}" a sorted set gateway id → lease expiry (ms);
// Admit's Lua script drops expired gateways, sums the rest and admits or
// refuses atomically. Run refreshes this gateway's leases every LeaseTTL/3
// and re-asserts its counts after an outage.
//
// Requests: GCRA in the same script on PREFIX+"rate:{USER}", on Redis's
// clock.
//
// Admit checks the rate and takes a tunnel in one script, one round trip,
// and reserves more when the customer is busy on this gateway: up to
// Prefetch tunnel slots and rate tokens, never more than half of what is
// left, so totals stay exact (never more than MaxConns tunnels, never a
// request beyond the GCRA) and a customer near a limit costs one round
// trip per Admit. Releases cost no round trip: the slot stays reserved
// here. Run gives back every unused reservation each FlushInterval. The
// price: a tunnel closed here, or a slot or token reserved here and not
// used, still counts for other gateways until the next flush, so near a
// limit another gateway may answer 429 up to FlushInterval (~100ms) before
// the customer is really back under it; this gateway reuses them at once.
// Nothing is lost: if Redis may have missed a give-back, Run re-asserts
// this gateway's count at its next lease refresh, and an unrefreshed lease
// still expires. When Run is not running Admit reserves nothing and sends
// each release at once.
//
// When Redis is unreachable it fails static: tunnels are capped per
// gateway at MaxConns and the request rate is enforced per gateway; the
// outage is logged once.
type RedisLimiter struct {
	cfg    LimiterConfig
	rdb    redis.UniversalClient
	logger *slog.Logger
	outage *outage
	local  *MemoryLimiter // rate fallback during an outage

	mu        sync.Mutex // guards open, acquiring, dirty, credits and running
	open      map[string]int64
	acquiring map[string]int64   // of open, those whose script has not answered yet
	dirty     map[string]bool    // users whose count in Redis may be wrong
	credits   map[string]*credit // Admit's reservations and demand, per user
	running   int                // Run loops under way: Admit reserves and batches
}

// NewRedisLimiter returns a limiter on client with cfg; zero fields of cfg
// take their defaults.
func NewRedisLimiter(client redis.UniversalClient, cfg LimiterConfig) (*RedisLimiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logger := cfg.Logger.With("component", "auth", "part", "limiter", "gateway_id", cfg.GatewayID)
	return &RedisLimiter{
		cfg:       cfg,
		rdb:       client,
		logger:    logger,
		outage:    newOutage(logger, cfg.Now),
		local:     NewMemoryLimiter(cfg.Now),
		open:      make(map[string]int64),
		acquiring: make(map[string]int64),
		dirty:     make(map[string]bool),
		credits:   make(map[string]*credit),
	}, nil
}

func (l *RedisLimiter) connKeys(user string) []string {
	return []string{l.cfg.Prefix + "conns:{" + user + "}", l.cfg.Prefix + "connlease:{" + user + "}"}
}

const luaNowMS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// releaseScript: KEYS conns, leases; ARGV gateway, tunnels released.
var releaseScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if n <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return n`)

// refreshScript: KEYS conns, leases; ARGV gateway, count, lease ms, force.
var refreshScript = redis.NewScript(luaNowMS + `
local lease = tonumber(ARGV[3])
local count = tonumber(ARGV[2])
local added = redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
if added == 1 or ARGV[4] == '1' then
  if count > 0 then
    redis.call('HSET', KEYS[1], ARGV[1], count)
  else
    redis.call('HDEL', KEYS[1], ARGV[1])
  end
end
if count <= 0 then redis.call('ZREM', KEYS[2], ARGV[1]) end
redis.call('PEXPIRE', KEYS[1], 2 * lease)
redis.call('PEXPIRE', KEYS[2], 2 * lease)
return 1`)

// settle marks an Admit of user that asked Redis for a tunnel as answered
// (or failed): the lease refresh counts the tunnel from now on. Until then
// the refresh must not: if it wrote a count including it and the admit
// script ran after, Redis would count that tunnel twice.
func (l *RedisLimiter) settle(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acquiring[user]--; l.acquiring[user] <= 0 {
		delete(l.acquiring, user)
	}
}

// forget takes one tunnel of user off the local count.
func (l *RedisLimiter) forget(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open[user]--
	if l.open[user] <= 0 && !l.dirty[user] {
		delete(l.open, user)
	}
}

func (l *RedisLimiter) markDirty(user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dirty[user] = true
	if _, ok := l.open[user]; !ok {
		l.open[user] = 0
	}
}

// admitScript: KEYS conns, leases, rate; ARGV gateway, max tunnels, lease
// ms, GCRA emission µs, burst, rate tokens wanted (0: the rate is not
// checked; else 1 plus the extra asked for), tunnel slots wanted (same).
// Extras are granted only out of at most half of what is left. Returns
// {0, 0, extra slots, extra tokens} when admitted, {1, µs until a retry
// may pass, 0, 0} when over the rate, {2, 0, 0, extra tokens} at the cap:
// the rate token is spent even when the cap refuses, as in MemoryLimiter.
var admitScript = redis.NewScript(`
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
local gw = ARGV[1]
local max = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local e = tonumber(ARGV[4])
local burst = tonumber(ARGV[5])
local rate_n = tonumber(ARGV[6])
local conn_n = tonumber(ARGV[7])
local rate_extra = 0
if rate_n > 0 then
  local tat = now_us
  local v = redis.call('GET', KEYS[3])
  if v then tat = math.max(tonumber(v), now_us) end
  local avail = math.floor((now_us + burst * e - tat) / e)
  if avail < 1 then return {1, math.ceil(tat + e - burst * e - now_us), 0, 0} end
  rate_extra = math.min(rate_n - 1, math.floor((avail - 1) / 2))
  local new = tat + (1 + rate_extra) * e
  redis.call('SET', KEYS[3], string.format('%d', new), 'PX', math.ceil((new - now_us) / 1000) + 1)
end
local conn_extra = 0
if conn_n > 0 then
  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for _, g in ipairs(dead) do
    redis.call('HDEL', KEYS[1], g)
    redis.call('ZREM', KEYS[2], g)
  end
  local total = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
  local room = max - total
  if room < 1 then return {2, 0, 0, rate_extra} end
  conn_extra = math.min(conn_n - 1, math.floor((room - 1) / 2))
  redis.call('HINCRBY', KEYS[1], gw, 1 + conn_extra)
  redis.call('ZADD', KEYS[2], now + lease, gw)
  redis.call('PEXPIRE', KEYS[1], 2 * lease)
  redis.call('PEXPIRE', KEYS[2], 2 * lease)
end
return {0, 0, conn_extra, rate_extra}`)

// giveBackScript: KEYS conns, leases, rate; ARGV gateway, tunnel slots,
// rate tokens, GCRA emission µs. It returns what a gateway reserved and
// did not use.
var giveBackScript = redis.NewScript(`
local slots = tonumber(ARGV[2])
if slots > 0 then
  local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -slots)
  if n <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
  end
end
local tokens = tonumber(ARGV[3])
if tokens > 0 then
  local v = redis.call('GET', KEYS[3])
  if v then
    local t = redis.call('TIME')
    local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local new = tonumber(v) - tokens * tonumber(ARGV[4])
    if new <= now_us then
      redis.call('DEL', KEYS[3])
    else
      redis.call('SET', KEYS[3], string.format('%d', new), 'PX', math.ceil((new - now_us) / 1000) + 1)
    end
  end
end
return 1`)

// credit is what this gateway holds in Redis for one customer beyond its
// open tunnels, for Admit; guarded by RedisLimiter.mu.
type credit struct {
	slots    int64 // tunnel slots counted in Redis for this gateway, not in use
	tokens   int64 // rate tokens spent in Redis, not yet used
	emission int64 // GCRA emission interval of the tokens, µs
	admits   int64 // Admit calls since the last flush
	demand   int64 // Admit calls in the flush interval before
}

// Admit admits one tunnel or request of c across every gateway, and fails
// as MemoryLimiter.Admit does: ErrRateLimited with how long to wait, or
// ErrTooManyConnections; on success release must be called once when the
// tunnel or request ends (calling it again does nothing). It costs no
// Redis call for a customer with neither MaxConns nor RatePerSec, nor
// while this gateway holds a reserved slot and token for the customer;
// otherwise one round trip, which reserves extras when the customer is
// busy here. Its release costs no round trip while Run runs. See
// RedisLimiter for the accuracy this costs.
//
// When Redis is unreachable it fails static: the rate is enforced and the
// tunnels capped per gateway; what this gateway had reserved is still
// used.
func (l *RedisLimiter) Admit(ctx context.Context, c *Customer) (func(), time.Duration, error) {
	capped, rated := c.MaxConns > 0, c.RatePerSec > 0
	if !capped && !rated {
		return func() {}, 0, nil
	}
	user := c.User
	var emission int64
	if rated {
		emission = max(int64(1e6/c.RatePerSec), 1)
	}
	l.mu.Lock()
	cr := l.credits[user]
	if cr == nil && l.running > 0 {
		cr = &credit{}
		l.credits[user] = cr
	}
	var extra int64
	if cr != nil {
		cr.admits++
		extra = max(min(int64(l.cfg.Prefetch), cr.demand), 0)
	}
	needRate := rated && (cr == nil || cr.tokens == 0)
	needConn := capped && (cr == nil || cr.slots == 0)
	if rated && !needRate {
		cr.tokens--
	}
	l.open[user] += b2i(capped)
	if capped && !needConn {
		cr.slots--
	}
	if needConn {
		l.acquiring[user]++
	}
	mine := l.open[user]
	l.mu.Unlock()
	if !needRate && !needConn {
		return l.releaser(user, capped), 0, nil
	}
	// undo gives back the tunnel counted above when the request is refused.
	undo := func(slot bool) {
		if !capped {
			return
		}
		if slot {
			l.mu.Lock()
			if cr := l.credits[user]; cr != nil {
				cr.slots++
			} else {
				l.dirty[user] = true // the slot is in Redis: re-assert
			}
			l.mu.Unlock()
		}
		l.forget(user)
	}

	rateN, connN := int64(0), int64(0)
	if needRate {
		rateN = 1 + extra
	}
	if needConn {
		connN = 1 + extra
	}
	keys := []string{l.cfg.Prefix + "conns:{" + user + "}", l.cfg.Prefix + "connlease:{" + user + "}", l.cfg.Prefix + "rate:{" + user + "}"}
	cctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	res, err := admitScript.Run(cctx, l.rdb, keys, l.cfg.GatewayID, c.MaxConns, l.cfg.LeaseTTL.Milliseconds(), emission, c.burst(), rateN, connN).Int64Slice()
	cancel()
	if needConn {
		l.settle(user)
	}
	if err == nil && len(res) != 4 {
		err = fmt.Errorf("admit script answered %v", res)
	}
	if l.outage.observe(ctx, err) || err != nil {
		// Whether Redis applied the script is unknown: Run re-asserts the count.
		if needConn {
			l.markDirty(user)
		}
		if ctx.Err() != nil {
			undo(!needConn)
			return nil, 0, fmt.Errorf("customer %q: admitting: %w", user, ctx.Err())
		}
		// Fail static: rate and cap per gateway.
		if needRate {
			if wait, err := l.local.allow(c); err != nil {
				undo(!needConn)
				return nil, wait, err
			}
		}
		if needConn && mine > int64(c.MaxConns) {
			undo(false)
			return nil, 0, fmt.Errorf("customer %q: %d tunnels open here (redis unreachable): %w", user, c.MaxConns, ErrTooManyConnections)
		}
		return l.releaser(user, capped), 0, nil
	}
	if res[2] > 0 || res[3] > 0 {
		l.mu.Lock()
		cr := l.credits[user]
		if cr == nil {
			cr = &credit{}
			l.credits[user] = cr
		}
		cr.slots += res[2]
		cr.tokens += res[3]
		cr.emission = emission
		l.mu.Unlock()
	}
	switch res[0] {
	case 1:
		undo(!needConn)
		return nil, time.Duration(res[1]) * time.Microsecond, fmt.Errorf("customer %q: %w", user, ErrRateLimited)
	case 2:
		undo(false)
		return nil, 0, fmt.Errorf("customer %q: %d tunnels open: %w", user, c.MaxConns, ErrTooManyConnections)
	}
	return l.releaser(user, capped), 0, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// releaser returns the release func of one of Admit's tunnels.
func (l *RedisLimiter) releaser(user string, capped bool) func() {
	if !capped {
		return func() {}
	}
	var once atomic.Bool
	return func() {
		if !once.Swap(true) {
			l.release(user)
		}
	}
}

// release takes one of Admit's tunnels of user off the local count and
// keeps its slot, still counted in Redis, for the next Admit or Run's
// next flush; when Run is not running it is given back at once.
func (l *RedisLimiter) release(user string) {
	l.mu.Lock()
	l.open[user]--
	if l.open[user] <= 0 && !l.dirty[user] {
		delete(l.open, user)
	}
	if l.running > 0 {
		cr := l.credits[user]
		if cr == nil {
			cr = &credit{}
			l.credits[user] = cr
		}
		cr.slots++
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	ctx, cancel := withTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	err := releaseScript.Run(ctx, l.rdb, l.connKeys(user), l.cfg.GatewayID, 1).Err()
	if l.outage.observe(context.Background(), err) || err != nil {
		l.markDirty(user)
	}
}

// Run refreshes this gateway's tunnel leases every LeaseTTL/3 and gives
// back what Admit reserved and did not use every FlushInterval (both with
// jitter) until ctx ends, re-asserting counts that an outage may have made
// wrong. When ctx ends it gives back what is left (within Timeout) and
// returns nil; from then on releases are sent at once.
func (l *RedisLimiter) Run(ctx context.Context) error {
	l.mu.Lock()
	l.running++
	l.mu.Unlock()
	leaseEvery, flushEvery := l.cfg.LeaseTTL/3, l.cfg.FlushInterval
	lease, flush := time.NewTimer(leaseEvery), time.NewTimer(flushEvery)
	defer lease.Stop()
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			l.mu.Lock()
			l.running--
			l.mu.Unlock()
			// Give back what is left and re-assert every count an earlier
			// failed flush left in doubt (leases=true), retrying a slow
			// Redis a few times: nobody will do it after us.
			for range 3 {
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(l.cfg.Timeout, 2*time.Second))
				err := l.sync(fctx, true)
				cancel()
				if err == nil {
					break
				}
			}
			return nil
		case <-flush.C:
			l.sync(ctx, false)
			flush.Reset(jitter(flushEvery))
		case <-lease.C:
			l.sync(ctx, true)
			lease.Reset(jitter(leaseEvery))
		}
	}
}

// jitter returns d ± a tenth.
func jitter(d time.Duration) time.Duration { return d - d/10 + rand.N(d/5+1) }

// refresh gives back unused reservations and extends every lease of this
// gateway.
func (l *RedisLimiter) refresh(ctx context.Context) { l.sync(ctx, true) }

// sync gives back every unused reservation and, with leases, extends every
// lease of this gateway and re-asserts the counts that may be wrong, all
// in one pipeline. Give-backs go first, so a count re-asserted in the same
// pipeline (open tunnels only) agrees with them.
func (l *RedisLimiter) sync(ctx context.Context, leases bool) (err error) {
	defer recoverLoop(l.logger, "limiter sync")
	type back struct {
		user                    string
		slots, tokens, emission int64
	}
	type item struct {
		user  string
		count int64
		force bool
	}
	l.mu.Lock()
	var backs []back
	for u, cr := range l.credits {
		if cr.slots > 0 || cr.tokens > 0 {
			backs = append(backs, back{u, cr.slots, cr.tokens, cr.emission})
			cr.slots, cr.tokens = 0, 0
		}
		cr.demand, cr.admits = cr.admits, 0
		if cr.demand == 0 {
			delete(l.credits, u)
		}
	}
	var items []item
	if leases {
		items = make([]item, 0, len(l.open))
		for u, n := range l.open {
			items = append(items, item{u, n - l.acquiring[u], l.dirty[u]})
		}
	}
	l.mu.Unlock()
	if len(items) == 0 && len(backs) == 0 {
		return nil
	}
	cctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	pipe := l.rdb.Pipeline()
	for _, b := range backs {
		keys := []string{l.cfg.Prefix + "conns:{" + b.user + "}", l.cfg.Prefix + "connlease:{" + b.user + "}", l.cfg.Prefix + "rate:{" + b.user + "}"}
		giveBackScript.Eval(cctx, pipe, keys, l.cfg.GatewayID, b.slots, b.tokens, b.emission)
	}
	for _, it := range items {
		force := "0"
		if it.force {
			force = "1"
		}
		refreshScript.Eval(cctx, pipe, l.connKeys(it.user), l.cfg.GatewayID, it.count, l.cfg.LeaseTTL.Milliseconds(), force)
	}
	_, err = pipe.Exec(cctx)
	if l.outage.observe(ctx, err) || err != nil {
		// Slots given back may still count: re-assert those counts.
		// Tokens not given back only delay the customer by their worth.
		for _, b := range backs {
			if b.slots > 0 {
				l.markDirty(b.user)
			}
		}
		if err == nil {
			err = errors.New("redis unreachable")
		}
		return err
	}
	l.mu.Lock()
	for _, it := range items {
		if it.force && l.open[it.user]-l.acquiring[it.user] == it.count {
			delete(l.dirty, it.user)
		}
		if l.open[it.user] <= 0 && !l.dirty[it.user] {
			delete(l.open, it.user)
		}
	}
	l.mu.Unlock()
	return nil
}

// Open returns how many tunnels of user this gateway counts as open.
func (l *RedisLimiter) Open(user string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[user]
}
