// Package redisbreaker is a circuit breaker for one go-redis client, so that
// a Redis that hangs costs one timeout, not one per call.
//
// A Breaker is a redis.Hook. The first call that fails for want of Redis (a
// timeout, a refused or broken connection, an exhausted pool) opens it;
// while it is open every call on the client fails at once with ErrOpen,
// without touching the network, and every user of the client takes its
// fail-static path together. Run pings Redis in the background while the
// breaker is open and closes it when Redis answers.
//
// It is not a retry policy nor a health check for operators, and it knows
// nothing of what the calls are for: callers decide what to do with ErrOpen.
package redisbreaker

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrOpen is what every call gets while the breaker is open.
var ErrOpen = errors.New("redis breaker open: not answering, failing fast")

// Config tunes a Breaker. The zero value is usable: every zero field takes
// its default.
type Config struct {
	// ProbeInterval is how often Run pings Redis while the breaker is open
	// (with a tenth of jitter either way). Default: 500ms.
	ProbeInterval time.Duration
	// ProbeTimeout bounds each ping. Default: 250ms.
	ProbeTimeout time.Duration
	// Now is the clock that times an outage for the log. Default: time.Now.
	Now func() time.Time
	// Logger receives the breaker opening and closing, one line each.
	// Default: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		ProbeInterval: 500 * time.Millisecond,
		ProbeTimeout:  250 * time.Millisecond,
		Now:           time.Now,
		Logger:        slog.Default(),
	}
}

// Validate reports the first field that is wrong, by name.
func (c Config) Validate() error {
	switch {
	case c.ProbeInterval < 0:
		return errors.New("redis breaker config: ProbeInterval: must not be negative")
	case c.ProbeTimeout < 0:
		return errors.New("redis breaker config: ProbeTimeout: must not be negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.ProbeInterval == 0 {
		c.ProbeInterval = d.ProbeInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = d.ProbeTimeout
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// Breaker fails a client's calls fast while Redis does not answer. It
// opens only while Run runs (nothing else would close it). Safe for
// concurrent use.
//
// The client should honour its callers' deadlines
// (redis.Options.ContextTimeoutEnabled): otherwise the call that opens the
// breaker, and each probe, waits for the client's own read timeout.
type Breaker struct {
	cfg    Config
	rdb    redis.UniversalClient
	logger *slog.Logger

	open    atomic.Bool
	running atomic.Int32
	refused atomic.Int64  // calls failed fast during this outage
	opens   atomic.Int64  // times the breaker opened, for metrics
	fastAll atomic.Int64  // calls failed fast since New, for metrics
	opened  chan struct{} // tells Run the breaker opened

	mu    sync.Mutex // guards since; serializes opening and closing
	since time.Time  // when the breaker opened
}

var _ redis.Hook = (*Breaker)(nil)

// New returns a breaker for client, installed as one of its hooks.
func New(client redis.UniversalClient, cfg Config) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b := &Breaker{cfg: cfg, rdb: client, logger: cfg.Logger.With("component", "redis_breaker"),
		opened: make(chan struct{}, 1)}
	client.AddHook(b)
	return b, nil
}

// Open reports whether calls are failing fast now.
func (b *Breaker) Open() bool { return b.open.Load() }

// probeKey marks the context of Run's pings: they go through an open
// breaker.
type probeKey struct{}

func isProbe(ctx context.Context) bool { return ctx.Value(probeKey{}) != nil }

// DialHook implements redis.Hook. Dials are never refused (the pool may
// dial for a probe on a context of its own); a failed dial opens the
// breaker.
func (b *Breaker) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil && !isProbe(ctx) {
			b.observe(ctx, err)
		}
		return c, err
	}
}

// ProcessHook implements redis.Hook.
func (b *Breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isProbe(ctx) {
			return next(ctx, cmd)
		}
		if b.open.Load() {
			b.refused.Add(1)
			b.fastAll.Add(1)
			cmd.SetErr(ErrOpen)
			return ErrOpen
		}
		err := next(ctx, cmd)
		b.observe(ctx, err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook (pipelines and transactions).
func (b *Breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if isProbe(ctx) {
			return next(ctx, cmds)
		}
		if b.open.Load() {
			b.refused.Add(1)
			b.fastAll.Add(1)
			for _, c := range cmds {
				c.SetErr(ErrOpen)
			}
			return ErrOpen
		}
		err := next(ctx, cmds)
		b.observe(ctx, err)
		return err
	}
}

// unreachable reports whether err, from a call made under ctx, says Redis
// did not answer: a reply of Redis's own (redis.Nil, a script error, MOVED)
// says it did, and a caller that gave up says nothing about Redis.
func unreachable(ctx context.Context, err error) bool {
	var reply redis.Error
	switch {
	case err == nil, errors.Is(err, ErrOpen), errors.As(err, &reply):
		return false
	case errors.Is(err, context.Canceled), errors.Is(ctx.Err(), context.Canceled):
		return false
	case errors.Is(err, redis.ErrClosed): // the client was closed, Redis may be fine
		return false
	}
	return true
}

func (b *Breaker) observe(ctx context.Context, err error) {
	if !unreachable(ctx, err) || b.open.Load() || b.running.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open.Load() || b.running.Load() == 0 {
		return
	}
	b.since = b.cfg.Now()
	b.refused.Store(0)
	b.opens.Add(1)
	b.open.Store(true)
	b.logger.Warn("redis not answering; failing its calls fast until it does", "err", err)
	select {
	case b.opened <- struct{}{}:
	default:
	}
}

// close closes the breaker and logs it, if it was open.
func (b *Breaker) close(why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open.Load() {
		return
	}
	b.open.Store(false)
	b.logger.Info("redis breaker closed", "why", why, "open_for", b.cfg.Now().Sub(b.since).Round(time.Millisecond),
		"calls_failed_fast", b.refused.Load())
}

// Run probes Redis while the breaker is open, every ProbeInterval, and
// closes it when a ping is answered, until ctx ends. The breaker opens only
// while Run runs; when Run returns it closes, so that calls made after
// (a last usage flush) try Redis again. It returns nil.
func (b *Breaker) Run(ctx context.Context) error {
	b.running.Add(1)
	defer func() {
		if b.running.Add(-1) == 0 {
			b.close("prober stopped")
		}
	}()
	t := time.NewTimer(0)
	t.Stop()
	defer t.Stop()
	for {
		if !b.open.Load() {
			select {
			case <-ctx.Done():
				return nil
			case <-b.opened:
			}
		}
		t.Reset(jitter(b.cfg.ProbeInterval))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if b.open.Load() && b.probe(ctx) {
			b.close("redis answered a ping")
		}
	}
}

// probe pings Redis through the open breaker.
func (b *Breaker) probe(ctx context.Context) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			b.logger.Error("background loop panicked", "loop", "redis probe", "panic", r)
		}
	}()
	pctx, cancel := context.WithTimeout(context.WithValue(ctx, probeKey{}, true), b.cfg.ProbeTimeout)
	defer cancel()
	return b.rdb.Ping(pctx).Err() == nil
}

// jitter returns d ± a tenth.
func jitter(d time.Duration) time.Duration { return d - d/10 + rand.N(d/5+1) }
