package pool

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// Binding is a sticky session's choice: the exit and the egress IP.
type Binding struct {
	ExitID string
	Egress netip.Addr
}

// SessionStore keeps sticky bindings, possibly shared by every gateway (the
// Redis implementation lives elsewhere). Methods are called from [Pool.Pick]
// on the caller's goroutine and should honour ctx; an error makes the pick
// fall back to rendezvous hashing without storing.
type SessionStore interface {
	// Get returns the binding for key and refreshes its TTL (sliding).
	Get(ctx context.Context, key string, ttl time.Duration) (Binding, bool, error)
	// Bind stores b for key if absent (SET NX semantics) and returns the
	// binding in force (the existing one if another gateway won the race).
	Bind(ctx context.Context, key string, b Binding, ttl time.Duration) (Binding, error)
	// Rebind replaces the binding unconditionally.
	Rebind(ctx context.Context, key string, b Binding, ttl time.Duration) error
}

var _ SessionStore = (*MemorySessions)(nil)

// sweepBatch is how many entries one write examines for expiry.
const sweepBatch = 32

// MemorySessions is a SessionStore in this process's memory. Expired entries
// are dropped when read and swept in small batches on every write, so memory
// stays bounded by the live sessions without a goroutine.
type MemorySessions struct {
	now func() time.Time

	mu sync.Mutex // guards m
	m  map[string]memEntry
}

type memEntry struct {
	b       Binding
	expires time.Time
}

// NewMemorySessions returns an empty store; now is the clock (nil: time.Now).
func NewMemorySessions(now func() time.Time) *MemorySessions {
	if now == nil {
		now = time.Now
	}
	return &MemorySessions{now: now, m: make(map[string]memEntry)}
}

// Get implements SessionStore.
func (s *MemorySessions) Get(_ context.Context, key string, ttl time.Duration) (Binding, bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return Binding{}, false, nil
	}
	if !now.Before(e.expires) {
		delete(s.m, key)
		return Binding{}, false, nil
	}
	e.expires = now.Add(ttl)
	s.m[key] = e
	return e.b, true, nil
}

// Bind implements SessionStore.
func (s *MemorySessions) Bind(_ context.Context, key string, b Binding, ttl time.Duration) (Binding, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	if e, ok := s.m[key]; ok && now.Before(e.expires) {
		return e.b, nil
	}
	s.m[key] = memEntry{b: b, expires: now.Add(ttl)}
	return b, nil
}

// Rebind implements SessionStore.
func (s *MemorySessions) Rebind(_ context.Context, key string, b Binding, ttl time.Duration) error {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
	s.m[key] = memEntry{b: b, expires: now.Add(ttl)}
	return nil
}

// Len returns the number of stored entries, expired ones not yet swept
// included.
func (s *MemorySessions) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// sweepLocked examines up to sweepBatch entries (map iteration starts at a
// random place) and deletes the expired ones.
func (s *MemorySessions) sweepLocked(now time.Time) {
	n := 0
	for k, e := range s.m {
		if !now.Before(e.expires) {
			delete(s.m, k)
		}
		n++
		if n >= sweepBatch {
			return
		}
	}
}
