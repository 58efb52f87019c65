package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/farmgate/farmgate/pool"
)

// Probe fetches target through exit e, as a customer request would go. It
// fails when the exit cannot be reached or answers with an error of its own;
// what the probe target itself answers does not count against the exit.
func (g *Gateway) Probe(ctx context.Context, e *pool.Exit, target string) error {
	up, err := g.upstreamFor(e)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("probe exit %s: %w", e.ID, err)
	}
	if up.proxyAuth != "" {
		req.Header.Set("Proxy-Authorization", up.proxyAuth)
	}
	req.Header.Set("User-Agent", "farmgate-probe")
	resp, err := up.transport.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("probe exit %s: %w", e.ID, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if reason := resp.Header.Get(headerError); reason != "" && resp.StatusCode >= 400 {
		return fmt.Errorf("probe exit %s: %w", e.ID, &ExitError{Status: resp.StatusCode, Reason: reason})
	}
	return nil
}
