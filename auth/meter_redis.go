package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisMeter is a Meter shared by every gateway: Add counts in memory, Run
// writes the counts to Redis with one pipeline (a script per user) every
// FlushInterval and reads back the month totals of customers with a quota,
// and Close writes the rest (call it on shutdown, so a SIGTERM loses
// nothing). While Redis is unreachable the usage is held in memory,
// bounded by MaxPendingKeys, and written when it returns.
//
// Keys: PREFIX+"usage:{USER}:m:2026-11" and PREFIX+"usage:{USER}:d:2026-11-05",
// hashes with the fields up, down, pool:NAME:up and pool:NAME:down; day
// keys expire after 62 days, month keys after 400.
//
// A flush that fails (Redis unreachable, or its reply lost in a timeout
// although Redis applied it) is retried with the same batch number; Redis
// keeps the last number each meter applied per user (a key
// PREFIX+"usage:{USER}:batch:METER", for 7 days) and skips a batch it has
// applied already, so usage is neither lost nor counted twice.
type RedisMeter struct {
	*meter
}

var _ Meter = (*RedisMeter)(nil)

// NewRedisMeter returns a meter on client with cfg; zero fields of cfg
// take their defaults.
func NewRedisMeter(client redis.UniversalClient, cfg MeterConfig) (*RedisMeter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logger := cfg.Logger.With("component", "auth", "part", "meter")
	sink := &redisSink{rdb: client, prefix: cfg.Prefix, timeout: cfg.Timeout, outage: newOutage(logger, cfg.Now), meterID: newMeterID()}
	return &RedisMeter{newMeter(cfg, sink, logger)}, nil
}

const (
	dayKeyTTL   = 62 * 24 * time.Hour
	monthKeyTTL = 400 * 24 * time.Hour
)

type redisSink struct {
	rdb     redis.UniversalClient
	prefix  string
	timeout time.Duration
	outage  *outage
	meterID string // names this meter's batch markers: random per process
}

func newMeterID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *redisSink) monthKey(user, month string) string {
	return s.prefix + "usage:{" + user + "}:m:" + month
}

func (s *redisSink) dayKey(user, day string) string {
	return s.prefix + "usage:{" + user + "}:d:" + day
}

// batchScript applies one user's part of a batch unless it was applied
// before. KEYS: the user's batch marker of this meter, then the month and
// the day key of each entry. ARGV: batch number, marker, month and day TTL
// in seconds, then pool, up and down of each entry. Returns 1 when applied,
// 0 for a batch already applied.
var batchScript = redis.NewScript(`
local seq = tonumber(ARGV[1])
if seq <= tonumber(redis.call('GET', KEYS[1]) or '0') then return 0 end
redis.call('SET', KEYS[1], seq, 'EX', ARGV[2])
local a = 5
for k = 2, #KEYS, 2 do
  local pool, up, down = ARGV[a], tonumber(ARGV[a+1]), tonumber(ARGV[a+2])
  a = a + 3
  for _, key in ipairs({KEYS[k], KEYS[k+1]}) do
    if up ~= 0 then
      redis.call('HINCRBY', key, 'up', up)
      redis.call('HINCRBY', key, 'pool:' .. pool .. ':up', up)
    end
    if down ~= 0 then
      redis.call('HINCRBY', key, 'down', down)
      redis.call('HINCRBY', key, 'pool:' .. pool .. ':down', down)
    end
  end
  redis.call('EXPIRE', KEYS[k], ARGV[3])
  redis.call('EXPIRE', KEYS[k+1], ARGV[4])
end
return 1
`)

// markerTTL is how long Redis remembers the last batch a meter applied for
// a user: a batch in doubt for longer (Redis gone for a week) could be
// counted twice.
const markerTTL = 7 * 24 * time.Hour

func (s *redisSink) write(ctx context.Context, b *batch, watch []string, month string) (map[string]int64, error) {
	cctx, cancel := withTimeout(ctx, s.timeout)
	defer cancel()
	// One script call per user: its keys share the user's hash slot, and
	// the user's marker makes the call idempotent.
	type call struct {
		keys []string
		args []any
	}
	calls := map[string]*call{}
	for k, v := range b.entries {
		c := calls[k.user]
		if c == nil {
			c = &call{
				keys: []string{s.prefix + "usage:{" + k.user + "}:batch:" + s.meterID},
				args: []any{b.seq, int64(markerTTL / time.Second), int64(monthKeyTTL / time.Second), int64(dayKeyTTL / time.Second)},
			}
			calls[k.user] = c
		}
		c.keys = append(c.keys, s.monthKey(k.user, k.p.month), s.dayKey(k.user, k.p.day))
		c.args = append(c.args, k.pool, v.t.Up, v.t.Down)
	}
	exec := func() ([]*redis.SliceCmd, error) {
		pipe := s.rdb.Pipeline()
		for _, c := range calls {
			batchScript.EvalSha(cctx, pipe, c.keys, c.args...)
		}
		reads := make([]*redis.SliceCmd, len(watch))
		for i, u := range watch {
			reads[i] = pipe.HMGet(cctx, s.monthKey(u, month), "up", "down")
		}
		_, err := pipe.Exec(cctx)
		return reads, err
	}
	reads, err := exec()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// A new or flushed Redis: load the script and go again, which is
		// safe since the calls that ran will not apply twice.
		if err = batchScript.Load(cctx, s.rdb).Err(); err == nil {
			reads, err = exec()
		}
	}
	if s.outage.observe(ctx, err) || err != nil {
		return nil, fmt.Errorf("writing usage: %w", err)
	}
	totals := make(map[string]int64, len(watch))
	for i, u := range watch {
		var t int64
		for _, v := range reads[i].Val() {
			if str, ok := v.(string); ok {
				n, _ := strconv.ParseInt(str, 10, 64)
				t += n
			}
		}
		totals[u] = t
	}
	return totals, nil
}

func (s *redisSink) read(ctx context.Context, user string, p period) (UsageReport, error) {
	cctx, cancel := withTimeout(ctx, s.timeout)
	defer cancel()
	pipe := s.rdb.Pipeline()
	mo := pipe.HGetAll(cctx, s.monthKey(user, p.month))
	day := pipe.HGetAll(cctx, s.dayKey(user, p.day))
	_, err := pipe.Exec(cctx)
	if s.outage.observe(ctx, err) || err != nil {
		return UsageReport{}, fmt.Errorf("reading usage of %q: %w: %w", user, ErrStoreUnavailable, err)
	}
	r := UsageReport{User: user, Month: p.month, Day: p.day}
	r.ThisMonth, r.MonthByPool = parseUsage(mo.Val())
	r.Today, r.TodayByPool = parseUsage(day.Val())
	return r, nil
}

// parseUsage reads a usage hash.
func parseUsage(h map[string]string) (Traffic, map[string]Traffic) {
	var total Traffic
	byPool := map[string]Traffic{}
	for f, v := range h {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			continue
		}
		switch f {
		case "up":
			total.Up = n
		case "down":
			total.Down = n
		default:
			rest, ok := strings.CutPrefix(f, "pool:")
			if !ok {
				continue
			}
			i := strings.LastIndexByte(rest, ':')
			if i < 0 {
				continue
			}
			t := byPool[rest[:i]]
			switch rest[i+1:] {
			case "up":
				t.Up = n
			case "down":
				t.Down = n
			}
			byPool[rest[:i]] = t
		}
	}
	return total, byPool
}
