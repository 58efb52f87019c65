package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/gateway/admin"
	"github.com/farmgate/farmgate/internal/redisbreaker"
	"github.com/farmgate/farmgate/pool"
)

// newRedisClient connects to Redis by URL (redis://[user:pass@]host:port/db,
// one node) or by a comma-separated address list (several: Cluster, or
// Sentinel with a master name in the URL-less form), and checks it answers.
// The client honours its callers' deadlines (each component's Redis
// timeout); go-redis otherwise waits out its own read timeouts.
func newRedisClient(ctx context.Context, addrs, rawURL string, timeout time.Duration) (redis.UniversalClient, error) {
	var rdb redis.UniversalClient
	switch {
	case rawURL != "" && addrs != "":
		return nil, usageError{errors.New("--redis and --redis-url: give one of them")}
	case rawURL != "":
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, usageError{fmt.Errorf("--redis-url: %w", err)}
		}
		opt.ContextTimeoutEnabled = true
		rdb = redis.NewClient(opt)
	case addrs != "":
		rdb = redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(addrs, ","), ContextTimeoutEnabled: true})
	default:
		return nil, nil
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("connect to redis: %w", err)
	}
	return rdb, nil
}

// customerStore is what the gateway needs of a customer store.
type customerStore interface {
	AuthenticateFrom(ctx context.Context, user, password string, client netip.Addr) (*auth.Customer, error)
	auth.Admin
}

// meter is a usage meter with its flush loop.
type meter interface {
	auth.Meter
	Run(ctx context.Context) error
	Close(ctx context.Context) error
}

// backends are the gateway's customers, limits, usage and sticky sessions:
// in Redis (shared by every gateway) or in this process (file store).
type backends struct {
	store    customerStore
	limiter  gateway.Limiter
	meter    meter
	sessions pool.SessionStore     // nil: the pool's in-memory default
	breaker  *redisbreaker.Breaker // nil without Redis
	// loops are the background loops to run until shutdown.
	loops []func(ctx context.Context) error
	close func()
}

// authConfig is the customer stores' configuration: defaults, the logger,
// and the login throttle's counters.
func authConfig(logger *slog.Logger, logins *admin.LoginCounters) auth.Config {
	acfg := auth.DefaultConfig()
	acfg.Logger = logger
	acfg.OnLockout, acfg.OnThrottled = logins.Lockout, logins.Throttled
	return acfg
}

func openBackends(ctx context.Context, s gatewaySettings, logger *slog.Logger, logins *admin.LoginCounters) (*backends, error) {
	acfg := authConfig(logger, logins)
	mcfg := auth.DefaultMeterConfig()
	mcfg.Logger = logger
	rdb, err := newRedisClient(ctx, s.redisAddrs, s.redisURL, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if rdb == nil {
		store, err := auth.LoadFileConfig(s.customersFile, acfg)
		if err != nil {
			return nil, usageError{fmt.Errorf("--customers: %w", err)}
		}
		m, err := auth.NewMemoryMeter(mcfg)
		if err != nil {
			return nil, err
		}
		return &backends{store: store, limiter: auth.NewMemoryLimiter(nil), meter: m,
			loops: []func(context.Context) error{m.Run}, close: func() {}}, nil
	}
	// One breaker for the client: when Redis hangs, the first timeout makes
	// every component below fail static at once instead of each waiting
	// out its own timeouts on every call.
	bcfg := redisbreaker.DefaultConfig()
	bcfg.Logger = logger
	brk, err := redisbreaker.New(rdb, bcfg)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	acfg.Prefix, mcfg.Prefix = s.redisPrefix, s.redisPrefix
	store, err := auth.NewRedisStore(rdb, acfg)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	lcfg := auth.DefaultLimiterConfig()
	lcfg.Prefix, lcfg.Logger = s.redisPrefix, logger
	lim, err := auth.NewRedisLimiter(rdb, lcfg)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	m, err := auth.NewRedisMeter(rdb, mcfg)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &backends{
		store: store, limiter: lim, meter: m,
		sessions: pool.NewRedisSessions(rdb, s.redisPrefix, 0),
		breaker:  brk,
		loops:    []func(context.Context) error{brk.Run, store.Run, lim.Run, m.Run},
		close:    func() { rdb.Close() },
	}, nil
}
