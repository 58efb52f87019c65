package gateway

import (
	"context"
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

// limit applies the customer's request rate, concurrency and quota before
// an exit is picked. On success release must be called when the tunnel or
// request ends.
func (g *Gateway) limit(ctx context.Context, c *auth.Customer) (release func(), err error) {
	if g.meter != nil && g.meter.OverQuota(c) {
		return nil, fmt.Errorf("customer %s: %w", c.User, errQuotaExceeded)
	}
	l := g.cfg.Limiter
	if l == nil {
		return func() {}, nil
	}
	wait, err := l.AllowRequest(ctx, c)
	if err != nil {
		return nil, &rateLimited{user: c.User, wait: wait}
	}
	release, err = l.AcquireTunnel(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("customer %s: %w", c.User, err)
	}
	return release, nil
}
