package upstream

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
	"github.com/farmgate/farmgate/pool"
)

// Check is the gateway's active health check of exit e, what
// pool.Config.Probe calls. A farmgate exit is asked whether it can serve
// (GET /farmgate/health with the exit token, on a new connection, so the
// exit's listener is checked too); it fails on no answer, or on any answer
// but 200. A third-party upstream (http://, https://, socks5://) has no such
// question, and a request through it costs its operator traffic: it is
// checked by a TCP connect. When probeURL is not empty, the exit must then
// also fetch it (see Probe): the deeper check, through the exit to an
// origin. ctx bounds the whole check.
func (s *Set) Check(ctx context.Context, e *pool.Exit, probeURL string) error {
	u, err := url.Parse(e.Addr)
	if err != nil || u.Host == "" {
		return fmt.Errorf("check exit %s: bad address", e.ID)
	}
	switch u.Scheme {
	case SchemeFarmgate:
		err = s.askHealth(ctx, e.ID, u.Host)
	case "http":
		err = s.dialCheck(ctx, e.ID, hostPort(u, "80"))
	case "https":
		err = s.dialCheck(ctx, e.ID, hostPort(u, "443"))
	case "socks5", "socks5h":
		err = s.dialCheck(ctx, e.ID, hostPort(u, "1080"))
	default:
		err = fmt.Errorf("check exit %s: unsupported scheme %q", e.ID, u.Scheme)
	}
	if err != nil || probeURL == "" {
		return err
	}
	return s.Probe(ctx, e, probeURL)
}

// hostPort returns u's host:port, with port def when u names none.
func hostPort(u *url.URL, def string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), def)
}

// dialCheck connects to addr and hangs up.
func (s *Set) dialCheck(ctx context.Context, id, addr string) error {
	d := net.Dialer{Timeout: s.cfg.DialTimeout, KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("check exit %s: %w: %w", id, ErrExitDial, err)
	}
	return c.Close()
}

// askHealth asks the farmgate exit at addr whether it can serve. The
// request is written by hand and only the answer's head is read, as for a
// CONNECT: a health check every few seconds per exit needs no Transport.
func (s *Set) askHealth(ctx context.Context, id, addr string) error {
	d := &connectDialer{addr: addr, forward: &net.Dialer{Timeout: s.cfg.DialTimeout, KeepAlive: -1}, handshakeTimeout: s.cfg.DialTimeout}
	if s.cfg.ExitTLS != nil {
		// Over TLS the check also checks the exit's certificate: an exit
		// whose certificate names another id is not healthy, it is not
		// this exit.
		d.tls = s.cfg.ExitTLS(id)
	}
	c, err := d.connect(ctx)
	if err != nil {
		return fmt.Errorf("check exit %s: %w", id, err)
	}
	defer c.Close()
	deadline := time.Now().Add(s.cfg.ReplyTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	req := "GET " + wire.HealthPath + " HTTP/1.1\r\nHost: " + addr +
		"\r\nProxy-Authorization: Bearer " + s.cfg.Token +
		"\r\nUser-Agent: farmgate-health\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return fmt.Errorf("check exit %s: send: %w", id, err)
	}
	status, hdr, err := readReplyHead(bufio.NewReaderSize(c, 1024))
	if err != nil {
		return fmt.Errorf("check exit %s: read answer: %w", id, err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("check exit %s: %w", id, &ExitError{Status: status, Reason: hdr.Get(wire.HeaderError)})
	}
	return nil
}

// Probe fetches target through exit e, as a customer request would go. It
// fails when the exit cannot be reached or answers with an error of its own;
// what the probe target itself answers does not count against the exit.
func (s *Set) Probe(ctx context.Context, e *pool.Exit, target string) error {
	x, err := s.For(e)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("probe exit %s: %w", e.ID, err)
	}
	req.Header.Set("User-Agent", "farmgate-probe")
	// Through an HTTP proxy's own forwarding, as the exit's HTTP proxy
	// path has it: a probe keeps no tunnel to the probe target open (each
	// would hold one of the exit's tunnel slots).
	var resp *http.Response
	if x.client != nil {
		if x.proxyAuth != "" {
			req.Header.Set("Proxy-Authorization", x.proxyAuth)
		}
		resp, err = x.client.RoundTrip(req)
		if err == nil && resp.Header.Get(wire.HeaderError) != "" && resp.StatusCode >= 400 {
			err = &ExitError{Status: resp.StatusCode, Reason: resp.Header.Get(wire.HeaderError)}
			resp.Body.Close()
		}
	} else {
		resp, err = x.RoundTrip(req, netip.Addr{})
	}
	if err != nil {
		return fmt.Errorf("probe exit %s: %w", e.ID, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return nil
}
