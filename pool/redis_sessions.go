package pool

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisSessions is a SessionStore shared by every gateway through Redis:
// key PREFIX+"sess:"+KEY holds "exitID|egressIP" with a sliding TTL. Get
// refreshes the TTL (GETEX PX), Bind is SET NX PX (the first gateway to
// bind wins and every other gets its binding), Rebind is SET PX. Bindings
// live in Redis, so they survive a gateway restart. Every call is bounded
// by the timeout. Safe for concurrent use.
type RedisSessions struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
}

var _ SessionStore = (*RedisSessions)(nil)

// NewRedisSessions returns a store on client; prefix starts every key
// (default "farmgate:"), timeout bounds each call (default 200ms).
func NewRedisSessions(client redis.UniversalClient, prefix string, timeout time.Duration) *RedisSessions {
	if prefix == "" {
		prefix = "farmgate:"
	}
	if timeout <= 0 {
		timeout = 200 * time.Millisecond
	}
	return &RedisSessions{rdb: client, prefix: prefix, timeout: timeout}
}

func (s *RedisSessions) key(k string) string { return s.prefix + "sess:" + k }

// encodeBinding returns "exitID|egressIP" ("exitID|" without an egress IP).
func encodeBinding(b Binding) string {
	if !b.Egress.IsValid() {
		return b.ExitID + "|"
	}
	return b.ExitID + "|" + b.Egress.String()
}

// decodeBinding parses encodeBinding's output. The exit id may itself hold
// '|': the last one separates.
func decodeBinding(v string) (Binding, error) {
	i := strings.LastIndexByte(v, '|')
	if i <= 0 {
		return Binding{}, fmt.Errorf("decoding session binding %q: want exitID|egressIP", v)
	}
	b := Binding{ExitID: v[:i]}
	if ip := v[i+1:]; ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return Binding{}, fmt.Errorf("decoding session binding %q: %w", v, err)
		}
		b.Egress = a
	}
	return b, nil
}

// ttlOrMin keeps a TTL Redis accepts (at least 1ms).
func ttlOrMin(ttl time.Duration) time.Duration { return max(ttl, time.Millisecond) }

// Get implements SessionStore.
func (s *RedisSessions) Get(ctx context.Context, key string, ttl time.Duration) (Binding, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, err := s.rdb.GetEx(ctx, s.key(key), ttlOrMin(ttl)).Result()
	if errors.Is(err, redis.Nil) {
		return Binding{}, false, nil
	}
	if err != nil {
		return Binding{}, false, fmt.Errorf("reading session %q: %w", key, err)
	}
	b, err := decodeBinding(v)
	if err != nil {
		return Binding{}, false, err
	}
	return b, true, nil
}

// bindScript sets the binding if absent (NX) and returns the binding in
// force, in one round trip (the script is atomic: SET NX semantics).
var bindScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return cur
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]`)

// Bind implements SessionStore: the binding already in force wins (and
// its TTL is refreshed).
func (s *RedisSessions) Bind(ctx context.Context, key string, b Binding, ttl time.Duration) (Binding, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	v, err := bindScript.Run(ctx, s.rdb, []string{s.key(key)}, encodeBinding(b), ttlOrMin(ttl).Milliseconds()).Text()
	if err != nil {
		return Binding{}, fmt.Errorf("binding session %q: %w", key, err)
	}
	return decodeBinding(v)
}

// Rebind implements SessionStore.
func (s *RedisSessions) Rebind(ctx context.Context, key string, b Binding, ttl time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if err := s.rdb.Set(ctx, s.key(key), encodeBinding(b), ttlOrMin(ttl)).Err(); err != nil {
		return fmt.Errorf("rebinding session %q: %w", key, err)
	}
	return nil
}
