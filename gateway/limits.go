package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/farmgate/farmgate/auth"
)

// Limiter enforces customers' concurrent tunnels (auth.Customer.MaxConns)
// and request rates (RatePerSec, RateBurst): auth.MemoryLimiter for one
// gateway, auth.RedisLimiter across gateways. The gateway calls Admit on
// the customer's goroutine, once per tunnel or request, after the customer
// is authenticated and before an exit is picked; Admit must be safe for
// concurrent use and should answer quickly (the Redis limiter takes at
// most one bounded round trip).
type Limiter interface {
	// Admit admits one tunnel or request of c. It fails with an error
	// wrapping auth.ErrRateLimited, retryAfter being how long to wait
	// before a retry may pass, or one wrapping auth.ErrTooManyConnections
	// when one more tunnel would exceed MaxConns. On success release must
	// be called once when the tunnel or request ends.
	Admit(ctx context.Context, c *auth.Customer) (release func(), retryAfter time.Duration, err error)
}

var (
	_ Limiter = (*auth.MemoryLimiter)(nil)
	_ Limiter = (*auth.RedisLimiter)(nil)
)

// rateLimited is auth.ErrRateLimited with the wait the limiter computed.
type rateLimited struct {
	user string
	wait time.Duration
}

func (e *rateLimited) Error() string {
	return fmt.Sprintf("customer %s: %v (retry after %s)", e.user, auth.ErrRateLimited, e.wait)
}
func (e *rateLimited) Unwrap() error             { return auth.ErrRateLimited }
func (e *rateLimited) RetryAfter() time.Duration { return e.wait }

// limit applies the customer's quota, request rate and concurrency before
// an exit is picked, with one Limiter call (with the Redis limiter at most
// one round trip, usually none for a busy customer; see auth.RedisLimiter).
// On success release must be called when the tunnel or request ends.
func (g *Gateway) limit(ctx context.Context, c *auth.Customer) (release func(), err error) {
	if g.meter != nil && g.meter.OverQuota(c) {
		return nil, fmt.Errorf("customer %s: %w", c.User, errQuotaExceeded)
	}
	l := g.cfg.Limiter
	if l == nil {
		return func() {}, nil
	}
	release, wait, err := l.Admit(ctx, c)
	switch {
	case err == nil:
		return release, nil
	case errors.Is(err, auth.ErrRateLimited):
		return nil, &rateLimited{user: c.User, wait: wait}
	case g.ctx.Err() != nil:
		return nil, fmt.Errorf("customer %s: %w: %w", c.User, errShuttingDown, err)
	default:
		return nil, fmt.Errorf("customer %s: %w", c.User, err)
	}
}
