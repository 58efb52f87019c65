package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// redisLog passes go-redis's own log lines (a dial that failed, a Sentinel
// failover) to slog, one record each with component=redis, instead of
// go-redis's default logger on stderr. go-redis has no levels of its own
// on these lines: those about a failure are warnings, the rest info.
type redisLog struct{ log *slog.Logger }

func newRedisLog(l *slog.Logger) *redisLog { return &redisLog{log: l.With("component", "redis")} }

func (r *redisLog) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	msg = strings.TrimPrefix(msg, "redis: ")
	level := slog.LevelInfo
	lower := strings.ToLower(msg)
	for _, bad := range []string{"fail", "error", "panic", "bad", "discard", "unable", "timeout", "refused"} {
		if strings.Contains(lower, bad) {
			level = slog.LevelWarn
			break
		}
	}
	r.log.Log(ctx, level, msg)
}
