// Package static finds the exits an operator names in the configuration
// (--exit ID=HOST:PORT): it asks each about itself (pool, DC, country,
// egress IPs) and feeds it to the pool, as package cluster does for exits
// found over gossip. It is not where exits are dialled (package upstream).
package static

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// Exit names a farmgate exit by id and address (--exit ID=HOST:PORT).
type Exit struct {
	ID   string
	Addr string // host:port, or farmgate://host:port
}

// Parse parses "ID=HOST:PORT" (or ID=farmgate://HOST:PORT).
func Parse(s string) (Exit, error) {
	id, raw, ok := strings.Cut(s, "=")
	if !ok || id == "" || raw == "" {
		return Exit{}, fmt.Errorf("exit %q: want ID=URL", s)
	}
	if !strings.Contains(raw, "://") {
		raw = upstream.SchemeFarmgate + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Exit{}, fmt.Errorf("exit %q: bad address", s)
	}
	if u.Scheme != upstream.SchemeFarmgate && u.Scheme != "http" {
		return Exit{}, fmt.Errorf("exit %q: --exit names a farmgate exit (farmgate:// or http://host:port); put third-party upstreams in the config file", s)
	}
	return Exit{ID: id, Addr: u.Host}, nil
}

// Learn asks each exit about itself and adds it to p, retrying
// those that do not answer every few seconds until all are known or ctx is
// done. It blocks; run it in a goroutine the caller owns. exitTLS, when
// not nil, gives the mutual-TLS configuration for the exit of an id
// (farmtls.Holder.ClientConfig): an exit whose certificate names another
// id than its --exit name is not added.
func Learn(ctx context.Context, p *pool.Pool, exits []Exit, token string, exitTLS func(id string) *tls.Config, logger *slog.Logger) {
	left := append([]Exit(nil), exits...)
	for len(left) > 0 {
		var still []Exit
		for _, se := range left {
			var tc *tls.Config
			if exitTLS != nil {
				tc = exitTLS(se.ID)
			}
			info, err := upstream.FetchInfo(ctx, se.Addr, token, tc)
			if err != nil {
				logger.Warn("exit not reachable yet", "exit", se.ID, "err", err)
				still = append(still, se)
				continue
			}
			if info.ID != se.ID {
				logger.Warn("exit id differs from its --exit name; using the configured one", "exit", se.ID, "reported", info.ID)
			}
			p.Upsert(upstream.ExitFromInfo(se.ID, upstream.SchemeFarmgate+"://"+se.Addr, info))
			logger.Info("exit added", "exit", se.ID, "dc", info.DC, "pool", info.Pool, "country", info.Country, "egress_ips", len(info.Egress))
		}
		left = still
		if len(left) == 0 {
			return
		}
		t := time.NewTimer(2*time.Second + rand.N(time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
