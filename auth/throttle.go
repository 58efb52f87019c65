package auth

import (
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Failed logins are counted per client address, in two buckets: one for
// the address and a user name, one for the address and every user name.
// There is no bucket for a user name alone: failures from strangers'
// addresses must never refuse the right password from an address that has
// not failed, or anyone could lock a customer out (and an attacker spread
// over many addresses still pays a slow hash per guess, MaxVerifies at a
// time).

// clientKey returns the throttling key of a client address: the address for
// IPv4, its /64 for IPv6 (one subscriber usually holds a whole /64), and
// "unknown" for the zero Addr (callers that know no address share one).
func clientKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	a = a.Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// throttleKey is one failed-login bucket and its limit.
type throttleKey struct {
	key   string // "ip:"+CLIENT or "ipu:"+CLIENT+"|"+USER
	limit int
	scope string // what the log calls it: "client" or "client_user"
}

// throttleKeys returns the buckets a login of user from client counts in.
func (c *Config) throttleKeys(user string, client netip.Addr) [2]throttleKey {
	ck := clientKey(client)
	return [2]throttleKey{
		{key: "ipu:" + ck + "|" + user, limit: c.MaxFailedLogins, scope: "client_user"},
		{key: "ip:" + ck, limit: c.MaxFailedLoginsPerClient, scope: "client"},
	}
}

// logLockout logs the start of a lockout: the failure that filled a bucket.
// Once per lockout, not per refused attempt.
func logLockout(cfg *Config, logger *slog.Logger, k throttleKey, user string, client netip.Addr, window time.Duration) {
	if cfg.OnLockout != nil {
		cfg.OnLockout(k.scope)
	}
	logger.Warn("failed logins throttled", "client", clientKey(client), "user", clip(user), "scope", k.scope,
		"failures", k.limit, "window", window.String())
}

// maxThrottleKeys bounds the memory throttle's map.
const maxThrottleKeys = 100_000

// memThrottle counts failed logins in this process (FileStore).
type memThrottle struct {
	cfg    *Config
	logger *slog.Logger

	mu sync.Mutex // guards m
	m  map[string]failWindow
}

type failWindow struct {
	n     int
	start time.Time
}

func newMemThrottle(cfg *Config, logger *slog.Logger) *memThrottle {
	return &memThrottle{cfg: cfg, logger: logger, m: make(map[string]failWindow)}
}

// throttled reports whether a login of user from client is refused
// unchecked: either of its buckets is full.
func (t *memThrottle) throttled(user string, client netip.Addr) bool {
	now := t.cfg.Now()
	keys := t.cfg.throttleKeys(user, client)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range keys {
		if w, ok := t.m[k.key]; ok && now.Sub(w.start) < t.cfg.FailedLoginWindow && w.n >= k.limit {
			return true
		}
	}
	return false
}

// fail counts one failed login of user from client, and logs a bucket
// that it fills.
func (t *memThrottle) fail(user string, client netip.Addr) {
	now := t.cfg.Now()
	keys := t.cfg.throttleKeys(user, client)
	var filled [2]bool
	t.mu.Lock()
	if len(t.m) >= maxThrottleKeys {
		for k, w := range t.m {
			if now.Sub(w.start) >= t.cfg.FailedLoginWindow {
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
	for i, k := range keys {
		w, ok := t.m[k.key]
		if !ok || now.Sub(w.start) >= t.cfg.FailedLoginWindow {
			w = failWindow{start: now}
		}
		w.n++
		t.m[k.key] = w
		filled[i] = w.n == k.limit
	}
	t.mu.Unlock()
	for i, k := range keys {
		if filled[i] {
			logLockout(t.cfg, t.logger, k, user, client, t.cfg.FailedLoginWindow)
		}
	}
}

// throttled tells OnThrottled of a login refused unchecked.
func (c *Config) throttled() {
	if c.OnThrottled != nil {
		c.OnThrottled()
	}
}
