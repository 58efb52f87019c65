package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/farmgate/farmgate/pool"
)

// serveConnect runs one CONNECT tunnel on a connection the gateway owns. br
// holds what was read past the request head; it is flushed to the exit
// before the relay starts and then returned to the pool.
func (g *Gateway) serveConnect(c net.Conn, br *bufio.Reader, req *http.Request) {
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	start := time.Now()
	target, err := connectTarget(req)
	if err == nil {
		var a admission
		a, err = g.admit(ctx, req.Header.Get("Proxy-Authorization"), remoteIP(c.RemoteAddr().String()))
		if err == nil {
			g.tunnel(ctx, c, br, a, target, start)
			return
		}
	}
	r := replyFor(err)
	g.logger.Debug("connect refused", "remote", c.RemoteAddr().String(), "status", r.status, "reason", r.reason, "err", err)
	r.writeRaw(c, "")
	g.putBuf(br)
}

func (g *Gateway) tunnel(ctx context.Context, c net.Conn, br *bufio.Reader, a admission, target string, start time.Time) {
	exitConn, pick, err := g.dialExit(ctx, &a.crit, target)
	if err != nil {
		r := replyFor(err)
		g.logger.Info("tunnel failed", "customer", a.customer.User, "pool", a.crit.Pool, "target", target, "status", r.status, "reason", r.reason, "err", err)
		r.writeRaw(c, "")
		g.putBuf(br)
		return
	}
	id := pick.Exit.ID
	g.pool.TunnelOpened(id)
	defer g.pool.TunnelClosed(id)

	var b strings.Builder
	b.Grow(96)
	b.WriteString("HTTP/1.1 200 Connection established\r\n" + headerExit + ": ")
	b.WriteString(id)
	b.WriteString("\r\n")
	if pick.Rebound {
		b.WriteString(headerSess + ": rebound\r\n")
	}
	b.WriteString("\r\n")
	if _, err := c.Write([]byte(b.String())); err != nil {
		exitConn.Close()
		g.putBuf(br)
		return
	}
	// Bytes the customer sent right behind the CONNECT head go first.
	if n := br.Buffered(); n > 0 {
		buf, _ := br.Peek(n)
		if _, err := exitConn.Write(buf); err != nil {
			exitConn.Close()
			g.putBuf(br)
			return
		}
	}
	g.putBuf(br)
	stop := context.AfterFunc(g.ctx, func() { c.Close(); exitConn.Close() })
	up, down := relay(c, exitConn, g.cfg.IdleTimeout, g.cfg.FinTimeout)
	stop()
	g.logger.Debug("tunnel closed", "customer", a.customer.User, "pool", a.crit.Pool, "exit", id,
		"egress", pick.Egress.String(), "target", target, "bytes_up", up, "bytes_down", down,
		"duration", time.Since(start).String())
}

// dialExit picks an exit and opens a tunnel through it to target, trying
// other exits when one fails for its own reasons. Nothing has been sent to
// the customer yet, so a retry is invisible to them.
func (g *Gateway) dialExit(ctx context.Context, crit *pool.Criteria, target string) (net.Conn, pool.Pick, error) {
	var tried [10]string
	var lastErr error
	for attempt := 0; attempt < g.cfg.MaxAttempts; attempt++ {
		crit.Exclude = tried[:attempt]
		pick, err := g.pool.Pick(ctx, *crit)
		if err != nil {
			if lastErr != nil {
				return nil, pool.Pick{}, lastErr
			}
			return nil, pool.Pick{}, err
		}
		id := pick.Exit.ID
		tried[attempt] = id
		up, err := g.upstreamFor(pick.Exit)
		if err != nil {
			g.pool.Report(id, pool.ExitFailed, 0)
			lastErr = err
			continue
		}
		t0 := time.Now()
		conn, err := up.dialer.DialContext(withEgress(ctx, pick.Egress), "tcp", target)
		setup := time.Since(t0)
		if err == nil {
			g.pool.Report(id, pool.OK, setup)
			return conn, pick, nil
		}
		err = fmt.Errorf("tunnel through exit %s: %w", id, err)
		if !exitFault(err) {
			g.pool.Report(id, pool.DestFailed, setup)
			return nil, pool.Pick{}, err
		}
		g.pool.Report(id, pool.ExitFailed, setup)
		g.logger.Warn("exit failed, trying another", "exit", id, "attempt", attempt+1, "err", err)
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, pool.Pick{}, lastErr
}

// connectTarget validates a CONNECT request's authority-form target.
func connectTarget(req *http.Request) (string, error) {
	t := req.RequestURI
	host, port, err := net.SplitHostPort(t)
	if err != nil || host == "" {
		return "", fmt.Errorf("CONNECT target %q: %w", t, errBadTarget)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("CONNECT target %q: bad port: %w", t, errBadTarget)
	}
	if strings.ContainsAny(host, " \r\n/@") {
		return "", fmt.Errorf("CONNECT target %q: %w", t, errBadTarget)
	}
	return t, nil
}
