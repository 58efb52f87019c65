package auth

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// outage tracks whether Redis is reachable for one component and logs the
// start and the end of an outage once each, never per request.
type outage struct {
	logger *slog.Logger
	now    func() time.Time

	down  atomic.Bool // fast path for ok
	mu    sync.Mutex  // guards since and calls
	since time.Time
	calls int // failed calls during the outage
}

func newOutage(logger *slog.Logger, now func() time.Time) *outage {
	return &outage{logger: logger, now: now}
}

// observe records the result of a Redis call made under parent: a success
// (or redis.Nil) ends an outage, a failure not caused by parent ending
// starts one. It reports whether err is an outage.
func (o *outage) observe(parent context.Context, err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		o.ok()
		return false
	}
	if parent.Err() != nil {
		return false // the caller gave up; says nothing about Redis
	}
	o.fail(err)
	return true
}

func (o *outage) ok() {
	if !o.down.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.down.Load() {
		return
	}
	o.down.Store(false)
	o.logger.Info("redis reachable again", "outage", o.now().Sub(o.since).Round(time.Millisecond), "failed_calls", o.calls)
}

func (o *outage) fail(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.down.Load() {
		o.calls++
		return
	}
	o.down.Store(true)
	o.since, o.calls = o.now(), 1
	o.logger.Warn("redis unreachable; serving from memory", "err", err)
}

// withTimeout returns a context for one Redis call.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d)
}

// recoverLoop logs a panic of a background loop's iteration; the loop goes
// on at its cadence.
func recoverLoop(logger *slog.Logger, loop string) {
	if r := recover(); r != nil {
		logger.Error("background loop panicked", "loop", loop, "panic", r)
	}
}
