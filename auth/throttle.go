package auth

import (
	"net/netip"
	"sync"
	"time"
)

// clientKey returns the throttling key of a client address: the address for
// IPv4, its /64 for IPv6 (one subscriber usually holds a whole /64), "" for
// the zero Addr (no address known: not throttled by address).
func clientKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// maxThrottleKeys bounds the memory throttle's map.
const maxThrottleKeys = 100_000

// memThrottle counts failed logins per user name and per client address in
// this process (FileStore).
type memThrottle struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu sync.Mutex // guards m
	m  map[string]failWindow
}

type failWindow struct {
	n     int
	start time.Time
}

func newMemThrottle(max int, window time.Duration, now func() time.Time) *memThrottle {
	return &memThrottle{max: max, window: window, now: now, m: make(map[string]failWindow)}
}

// throttled reports whether user or client has reached the limit.
func (t *memThrottle) throttled(user string, client netip.Addr) bool {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.overLocked("u:"+user, now) {
		return true
	}
	if ck := clientKey(client); ck != "" && t.overLocked("ip:"+ck, now) {
		return true
	}
	return false
}

func (t *memThrottle) overLocked(key string, now time.Time) bool {
	w, ok := t.m[key]
	return ok && now.Sub(w.start) < t.window && w.n >= t.max
}

// fail counts one failed login for user and client.
func (t *memThrottle) fail(user string, client netip.Addr) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) >= maxThrottleKeys {
		for k, w := range t.m {
			if now.Sub(w.start) >= t.window {
				delete(t.m, k)
			}
		}
		for k := range t.m { // still full: forget an arbitrary half
			if len(t.m) < maxThrottleKeys/2 {
				break
			}
			delete(t.m, k)
		}
	}
	t.incLocked("u:"+user, now)
	if ck := clientKey(client); ck != "" {
		t.incLocked("ip:"+ck, now)
	}
}

func (t *memThrottle) incLocked(key string, now time.Time) {
	w, ok := t.m[key]
	if !ok || now.Sub(w.start) >= t.window {
		w = failWindow{start: now}
	}
	w.n++
	t.m[key] = w
}
