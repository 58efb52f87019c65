package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
	"github.com/farmgate/farmgate/pool"
)

// ExitInfo is what a farmgate exit says about itself at /farmgate/info.
type ExitInfo = wire.Info

// FetchExitInfo asks the farmgate exit at addr (host:port) about itself,
// authenticating with token.
func FetchExitInfo(ctx context.Context, addr, token string) (ExitInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+wire.InfoPath, nil)
	if err != nil {
		return ExitInfo{}, fmt.Errorf("ask exit %s: %w", addr, err)
	}
	req.Header.Set("Proxy-Authorization", "Bearer "+token)
	c := http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{Proxy: nil, DialContext: (&net.Dialer{Timeout: 3 * time.Second}).DialContext, DisableKeepAlives: true},
	}
	resp, err := c.Do(req)
	if err != nil {
		return ExitInfo{}, fmt.Errorf("ask exit %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ExitInfo{}, fmt.Errorf("ask exit %s: %s (%s)", addr, resp.Status, resp.Header.Get(headerError))
	}
	var info ExitInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil {
		return ExitInfo{}, fmt.Errorf("ask exit %s: decode info: %w", addr, err)
	}
	return info, nil
}

// StaticExit names a farmgate exit by id and address (--exit ID=URL).
type StaticExit struct {
	ID   string
	Addr string // host:port, or farmgate://host:port
}

// ParseStaticExit parses "ID=URL".
func ParseStaticExit(s string) (StaticExit, error) {
	id, raw, ok := strings.Cut(s, "=")
	if !ok || id == "" || raw == "" {
		return StaticExit{}, fmt.Errorf("exit %q: want ID=URL", s)
	}
	if !strings.Contains(raw, "://") {
		raw = SchemeFarmgate + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return StaticExit{}, fmt.Errorf("exit %q: bad address", s)
	}
	if u.Scheme != SchemeFarmgate && u.Scheme != "http" {
		return StaticExit{}, fmt.Errorf("exit %q: --exit names a farmgate exit (farmgate:// or http://host:port); put third-party upstreams in the config file", s)
	}
	return StaticExit{ID: id, Addr: u.Host}, nil
}

// LearnExits asks each static exit about itself and adds it to p, retrying
// those that do not answer every few seconds until all are known or ctx is
// done. It blocks; run it in a goroutine the caller owns.
func LearnExits(ctx context.Context, p *pool.Pool, exits []StaticExit, token string, logger *slog.Logger) {
	left := append([]StaticExit(nil), exits...)
	for len(left) > 0 {
		var still []StaticExit
		for _, se := range left {
			info, err := FetchExitInfo(ctx, se.Addr, token)
			if err != nil {
				logger.Warn("exit not reachable yet", "exit", se.ID, "err", err)
				still = append(still, se)
				continue
			}
			if info.ID != se.ID {
				logger.Warn("exit id differs from its --exit name; using the configured one", "exit", se.ID, "reported", info.ID)
			}
			p.Upsert(ExitFromInfo(se.ID, SchemeFarmgate+"://"+se.Addr, info))
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

// ExitFromInfo turns an exit's self-description into a pool entry.
func ExitFromInfo(id, addr string, info ExitInfo) pool.Exit {
	return pool.Exit{
		ID:       id,
		DC:       strings.ToLower(info.DC),
		Pool:     strings.ToLower(info.Pool),
		Country:  strings.ToUpper(info.Country),
		City:     strings.ToLower(info.City),
		Egress:   info.Egress,
		Capacity: info.MaxTunnels,
		Addr:     addr,
	}
}
