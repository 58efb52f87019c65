package auth

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryLimiter enforces customers' concurrent tunnels (Customer.MaxConns)
// and request rate (Customer.RatePerSec, RateBurst) in this process, for a
// single gateway (the file store, the demo); RedisLimiter does it across
// every gateway. It is safe for concurrent use. The zero value is not
// usable; use NewMemoryLimiter.
type MemoryLimiter struct {
	now func() time.Time

	mu    sync.Mutex // guards conns and tat
	conns map[string]*atomic.Int64
	tat   map[string]int64 // GCRA theoretical arrival time per user, unix ns
}

// NewMemoryLimiter returns a limiter on the clock now (nil: time.Now).
func NewMemoryLimiter(now func() time.Time) *MemoryLimiter {
	if now == nil {
		now = time.Now
	}
	return &MemoryLimiter{now: now, conns: make(map[string]*atomic.Int64), tat: make(map[string]int64)}
}

// Admit admits one tunnel or request of c: it checks the request rate,
// then takes a tunnel. It returns an error wrapping ErrRateLimited, with
// how long to wait before a retry may pass, when the request exceeds the
// rate, and one wrapping ErrTooManyConnections when one more tunnel would
// exceed MaxConns; a request refused for MaxConns still counts against the
// rate. On success release must be called once when the tunnel or request
// ends (calling it again does nothing).
func (l *MemoryLimiter) Admit(_ context.Context, c *Customer) (release func(), retryAfter time.Duration, err error) {
	if retryAfter, err = l.allow(c); err != nil {
		return nil, retryAfter, err
	}
	if release, err = l.acquire(c); err != nil {
		return nil, 0, err
	}
	return release, 0, nil
}

// acquire takes one tunnel of c, or fails with ErrTooManyConnections when
// c has MaxConns open; release gives it back, once.
func (l *MemoryLimiter) acquire(c *Customer) (release func(), err error) {
	l.mu.Lock()
	n, ok := l.conns[c.User]
	if !ok {
		n = new(atomic.Int64)
		l.conns[c.User] = n
	}
	if c.MaxConns > 0 && n.Load() >= int64(c.MaxConns) {
		l.mu.Unlock()
		return nil, fmt.Errorf("customer %q: %d tunnels open: %w", c.User, c.MaxConns, ErrTooManyConnections)
	}
	n.Add(1)
	l.mu.Unlock()
	var once atomic.Bool
	return func() {
		if once.Swap(true) {
			return
		}
		l.mu.Lock()
		if n.Add(-1) <= 0 {
			delete(l.conns, c.User)
		}
		l.mu.Unlock()
	}, nil
}

// open returns the number of open tunnels of user in this process.
func (l *MemoryLimiter) open(user string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, ok := l.conns[user]; ok {
		return n.Load()
	}
	return 0
}

// maxRateKeys bounds the GCRA state kept in memory; past it, entries whose
// theoretical arrival time has passed (they hold no debt) are dropped.
const maxRateKeys = 100_000

// allow checks one request of c with GCRA: c.RatePerSec requests per
// second on average, c.burst() at once. Over the rate it fails with
// ErrRateLimited and how long to wait before a retry may pass.
func (l *MemoryLimiter) allow(c *Customer) (retryAfter time.Duration, err error) {
	if c.RatePerSec <= 0 {
		return 0, nil
	}
	now := l.now().UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.tat) >= maxRateKeys {
		for k, t := range l.tat {
			if t <= now {
				delete(l.tat, k)
			}
		}
	}
	retry, newTAT := gcra(l.tat[c.User], now, c.RatePerSec, c.burst())
	if retry > 0 {
		return retry, fmt.Errorf("customer %q: %w", c.User, ErrRateLimited)
	}
	l.tat[c.User] = newTAT
	return 0, nil
}

// gcra decides one request at now (unix ns) given the theoretical arrival
// time tat: it returns how long to wait (0: allowed) and the new tat.
func gcra(tat, now int64, rate float64, burst int) (time.Duration, int64) {
	emission := int64(math.Round(float64(time.Second) / rate))
	if emission < 1 {
		emission = 1
	}
	if tat < now {
		tat = now
	}
	newTAT := tat + emission
	allowAt := newTAT - emission*int64(burst)
	if now < allowAt {
		return time.Duration(allowAt - now), tat
	}
	return 0, newTAT
}
