package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/farmgate/farmgate/auth"
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
