package auth

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisMeter is a Meter shared by every gateway: Add counts in memory, Run
// writes the counts to Redis with one MULTI/EXEC pipeline every
// FlushInterval and reads back the month totals of customers with a quota,
// and Close writes the rest (call it on shutdown, so a SIGTERM loses
// nothing). While Redis is unreachable the usage is held in memory,
// bounded by MaxPendingKeys, and written when it returns.
//
// Keys: PREFIX+"usage:{USER}:m:2026-11" and PREFIX+"usage:{USER}:d:2026-11-05",
// hashes with the fields up, down, pool:NAME:up and pool:NAME:down; day
// keys expire after 62 days, month keys after 400.
//
// A flush whose EXEC reached Redis but whose reply was lost (a timeout at
// that very moment) is written again: usage may be counted twice then,
// never lost.
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
	sink := &redisSink{rdb: client, prefix: cfg.Prefix, timeout: cfg.Timeout, outage: newOutage(logger, cfg.Now)}
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
}

func (s *redisSink) monthKey(user, month string) string {
	return s.prefix + "usage:{" + user + "}:m:" + month
}

func (s *redisSink) dayKey(user, day string) string {
	return s.prefix + "usage:{" + user + "}:d:" + day
}

func (s *redisSink) write(ctx context.Context, batch map[pendKey]*pendVal, watch []string, month string) (map[string]int64, error) {
	cctx, cancel := withTimeout(ctx, s.timeout)
	defer cancel()
	pipe := s.rdb.TxPipeline()
	for k, v := range batch {
		for _, key := range []string{s.monthKey(k.user, k.p.month), s.dayKey(k.user, k.p.day)} {
			if v.t.Up != 0 {
				pipe.HIncrBy(cctx, key, "up", v.t.Up)
				pipe.HIncrBy(cctx, key, "pool:"+k.pool+":up", v.t.Up)
			}
			if v.t.Down != 0 {
				pipe.HIncrBy(cctx, key, "down", v.t.Down)
				pipe.HIncrBy(cctx, key, "pool:"+k.pool+":down", v.t.Down)
			}
		}
		pipe.Expire(cctx, s.monthKey(k.user, k.p.month), monthKeyTTL)
		pipe.Expire(cctx, s.dayKey(k.user, k.p.day), dayKeyTTL)
	}
	reads := make([]*redis.SliceCmd, len(watch))
	for i, u := range watch {
		reads[i] = pipe.HMGet(cctx, s.monthKey(u, month), "up", "down")
	}
	_, err := pipe.Exec(cctx)
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
