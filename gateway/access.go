package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/farmgate/farmgate/pool"
)

// accessEvent is one line of the access log: a tunnel or request that ended,
// or one that was refused. It never holds a password or token.
type accessEvent struct {
	kind     string // "connect" or "http"
	customer string
	pool     string
	target   string // the username's targeting, without the user
	exit     string
	egress   string
	dest     string // host:port
	status   int
	reason   string
	up, down int64
	setup    time.Duration
	total    time.Duration
}

// access counts ev for the operator (Activity, the per-customer series)
// and writes it to the access log, if there is one.
func (g *Gateway) access(ev accessEvent) {
	g.metrics.served(&ev)
	if g.cfg.AccessLog == nil {
		return
	}
	g.cfg.AccessLog.LogAttrs(context.Background(), slog.LevelInfo, "access",
		slog.String("kind", ev.kind),
		slog.String("customer", ev.customer),
		slog.String("pool", ev.pool),
		slog.String("targeting", ev.target),
		slog.String("exit", ev.exit),
		slog.String("egress_ip", ev.egress),
		slog.String("destination", ev.dest),
		slog.Int("status", ev.status),
		slog.String("reason", ev.reason),
		slog.Int64("bytes_up", ev.up),
		slog.Int64("bytes_down", ev.down),
		slog.Float64("setup_ms", float64(ev.setup.Microseconds())/1000),
		slog.Float64("total_ms", float64(ev.total.Microseconds())/1000),
	)
}

func egressString(p pool.Pick) string {
	if !p.Egress.IsValid() {
		return ""
	}
	return p.Egress.String()
}
