package upstream

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
	"github.com/farmgate/farmgate/pool"
)

// Info is what a farmgate exit says about itself at /farmgate/info.
type Info = wire.Info

// FetchInfo asks the farmgate exit at addr (host:port) about itself,
// authenticating with token, over a link made with tlsConf (the exit's
// farmtls.Holder.ClientConfig), or a plaintext one when tlsConf is nil.
func FetchInfo(ctx context.Context, addr, token string, tlsConf *tls.Config) (Info, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+wire.InfoPath, nil)
	if err != nil {
		return Info{}, fmt.Errorf("ask exit %s: %w", addr, err)
	}
	req.Header.Set("Proxy-Authorization", "Bearer "+token)
	d := &connectDialer{addr: addr, forward: &net.Dialer{Timeout: 3 * time.Second}, tls: tlsConf, handshakeTimeout: 3 * time.Second}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) { return d.connect(ctx) }
	c := http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{Proxy: nil, DialContext: dial, DisableKeepAlives: true},
	}
	resp, err := c.Do(req)
	if err != nil {
		return Info{}, fmt.Errorf("ask exit %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Info{}, fmt.Errorf("ask exit %s: %s (%s)", addr, resp.Status, resp.Header.Get(wire.HeaderError))
	}
	var info Info
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&info); err != nil {
		return Info{}, fmt.Errorf("ask exit %s: decode info: %w", addr, err)
	}
	return info, nil
}

// ExitFromInfo turns an exit's self-description into a pool entry.
func ExitFromInfo(id, addr string, info Info) pool.Exit {
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
