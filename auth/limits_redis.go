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
	// Now is the clock of the in-memory fallback. Default: time.Now.
	Now func() time.Time
	// Logger receives outages. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultLimiterConfig returns the configuration with every default filled in.
func DefaultLimiterConfig() LimiterConfig {
	host, _ := os.Hostname()
	return LimiterConfig{
		Prefix:    DefaultPrefix,
		Timeout:   500 * time.Millisecond,
		GatewayID: fmt.Sprintf("%s-%d-%08x", host, os.Getpid(), rand.Uint32()),
		LeaseTTL:  45 * time.Second,
		Now:       time.Now,
		Logger:    slog.Default(),
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
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// RedisLimiter is a Limiter shared by every gateway through Redis.
//
// Tunnels: PREFIX+"conns:{USER}" is a hash gateway id → open tunnels and
// PREFIX+"connlease:{USER}" a sorted set gateway id → lease expiry (ms); a
// Lua script drops expired gateways, sums the rest and admits or refuses
// atomically. Run refreshes this gateway's leases every LeaseTTL/3 and
// re-asserts its counts after an outage.
//
// Requests: GCRA in a Lua script on PREFIX+"rate:{USER}", on Redis's clock.
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

	mu    sync.Mutex // guards open and dirty
	open  map[string]int64
	dirty map[string]bool // users whose count in Redis may be wrong
}

var _ Limiter = (*RedisLimiter)(nil)

// NewRedisLimiter returns a limiter on client with cfg; zero fields of cfg
// take their defaults.
func NewRedisLimiter(client redis.UniversalClient, cfg LimiterConfig) (*RedisLimiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logger := cfg.Logger.With("component", "auth", "part", "limiter", "gateway_id", cfg.GatewayID)
	return &RedisLimiter{
		cfg:    cfg,
		rdb:    client,
		logger: logger,
		outage: newOutage(logger, cfg.Now),
		local:  NewMemoryLimiter(cfg.Now),
		open:   make(map[string]int64),
		dirty:  make(map[string]bool),
	}, nil
}

func (l *RedisLimiter) connKeys(user string) []string {
	return []string{l.cfg.Prefix + "conns:{" + user + "}", l.cfg.Prefix + "connlease:{" + user + "}"}
}

const luaNowMS = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// acquireScript: KEYS conns, leases; ARGV gateway, max, lease ms.
// Returns this gateway's new count, or -1 when full.
var acquireScript = redis.NewScript(luaNowMS + `
local lease = tonumber(ARGV[3])
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, g in ipairs(dead) do
  redis.call('HDEL', KEYS[1], g)
  redis.call('ZREM', KEYS[2], g)
end
local max = tonumber(ARGV[2])
local total = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do total = total + tonumber(v) end
if total >= max then return -1 end
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('ZADD', KEYS[2], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * lease)
redis.call('PEXPIRE', KEYS[2], 2 * lease)
return n`)

// releaseScript: KEYS conns, leases; ARGV gateway.
var releaseScript = redis.NewScript(`
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
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

// AcquireTunnel implements Limiter. A customer without MaxConns costs no
// Redis call.
func (l *RedisLimiter) AcquireTunnel(ctx context.Context, c *Customer) (func(), error) {
	if c.MaxConns <= 0 {
		return func() {}, nil
	}
	user := c.User
	l.mu.Lock()
	l.open[user]++
	mine := l.open[user]
	l.mu.Unlock()

	cctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	n, err := acquireScript.Run(cctx, l.rdb, l.connKeys(user), l.cfg.GatewayID, c.MaxConns, l.cfg.LeaseTTL.Milliseconds()).Int64()
	cancel()
	switch {
	case l.outage.observe(ctx, err) || err != nil:
		if ctx.Err() != nil {
			l.forget(user)
			return nil, fmt.Errorf("customer %q: acquiring tunnel: %w", user, ctx.Err())
		}
		// Fail static: cap this gateway alone; Run re-asserts the count later.
		if mine > int64(c.MaxConns) {
			l.forget(user)
			return nil, fmt.Errorf("customer %q: %d tunnels open here (redis unreachable): %w", user, c.MaxConns, ErrTooManyConnections)
		}
		l.markDirty(user)
	case n < 0:
		l.forget(user)
		return nil, fmt.Errorf("customer %q: %d tunnels open: %w", user, c.MaxConns, ErrTooManyConnections)
	}
	var once atomic.Bool
	return func() {
		if once.Swap(true) {
			return
		}
		l.forget(user)
		cctx, cancel := withTimeout(context.Background(), l.cfg.Timeout)
		defer cancel()
		err := releaseScript.Run(cctx, l.rdb, l.connKeys(user), l.cfg.GatewayID).Err()
		if l.outage.observe(context.Background(), err) || err != nil {
			l.markDirty(user)
		}
	}, nil
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

// gcraScript: KEYS rate key; ARGV emission µs, burst. Returns 0 when
// allowed, else µs until a retry may pass.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local e = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = now
local v = redis.call('GET', KEYS[1])
if v then tat = math.max(tonumber(v), now) end
local new = tat + e
local allow = new - e * burst
if now < allow then return math.ceil(allow - now) end
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1)
return 0`)

// AllowRequest implements Limiter. A customer without RatePerSec costs no
// Redis call.
func (l *RedisLimiter) AllowRequest(ctx context.Context, c *Customer) (time.Duration, error) {
	if c.RatePerSec <= 0 {
		return 0, nil
	}
	emission := max(int64(1e6/c.RatePerSec), 1)
	cctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	us, err := gcraScript.Run(cctx, l.rdb, []string{l.cfg.Prefix + "rate:{" + c.User + "}"}, emission, c.burst()).Int64()
	cancel()
	if l.outage.observe(ctx, err) || err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("customer %q: checking rate: %w", c.User, ctx.Err())
		}
		return l.local.AllowRequest(ctx, c) // fail static: per gateway
	}
	if us > 0 {
		return time.Duration(us) * time.Microsecond, fmt.Errorf("customer %q: %w", c.User, ErrRateLimited)
	}
	return 0, nil
}

// Run refreshes this gateway's tunnel leases every LeaseTTL/3 (with
// jitter) until ctx ends, re-asserting counts that an outage may have made
// wrong. It returns nil when ctx ends.
func (l *RedisLimiter) Run(ctx context.Context) error {
	every := l.cfg.LeaseTTL / 3
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		l.refresh(ctx)
		t.Reset(every - every/10 + rand.N(every/5+1))
	}
}

// refresh extends every lease of this gateway in one pipeline.
func (l *RedisLimiter) refresh(ctx context.Context) {
	defer recoverLoop(l.logger, "lease refresh")
	type item struct {
		user  string
		count int64
		force bool
	}
	l.mu.Lock()
	items := make([]item, 0, len(l.open))
	for u, n := range l.open {
		items = append(items, item{u, n, l.dirty[u]})
	}
	l.mu.Unlock()
	if len(items) == 0 {
		return
	}
	cctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	pipe := l.rdb.Pipeline()
	for _, it := range items {
		force := "0"
		if it.force {
			force = "1"
		}
		refreshScript.Eval(cctx, pipe, l.connKeys(it.user), l.cfg.GatewayID, it.count, l.cfg.LeaseTTL.Milliseconds(), force)
	}
	_, err := pipe.Exec(cctx)
	if l.outage.observe(ctx, err) || err != nil {
		return
	}
	l.mu.Lock()
	for _, it := range items {
		if it.force && l.open[it.user] == it.count {
			delete(l.dirty, it.user)
		}
		if l.open[it.user] <= 0 && !l.dirty[it.user] {
			delete(l.open, it.user)
		}
	}
	l.mu.Unlock()
}

// Open returns how many tunnels of user this gateway counts as open.
func (l *RedisLimiter) Open(user string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[user]
}
