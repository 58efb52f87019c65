package gateway

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// answerer speaks the customer's protocol when a tunnel is up or refused:
// HTTP for CONNECT, SOCKS5 replies for SOCKS.
type answerer interface {
	// established tells the customer the tunnel through pick is up, and
	// returns the bytes it wrote.
	established(c net.Conn, pick pool.Pick) (int, error)
	// refused tells the customer why there is no tunnel, and reports
	// whether c stays open for their next request.
	refused(c net.Conn, r reply) (keep bool)
	// kind names the protocol in logs and metrics.
	kind() string
}

// httpAnswer answers CONNECT.
type httpAnswer struct {
	kept bool // refused with the connection left open
}

func (*httpAnswer) kind() string { return "connect" }

// refused keeps the connection of a 407: a browser sends its first CONNECT
// without credentials and its next, with them, on the same connection (as
// squid allows), instead of paying a new handshake per tunnel. Nothing of a
// CONNECT is left unread behind its head.
func (a *httpAnswer) refused(c net.Conn, r reply) bool {
	a.kept = r.status == http.StatusProxyAuthRequired
	r.write(c, !a.kept)
	return a.kept
}

func (*httpAnswer) established(c net.Conn, pick pool.Pick) (int, error) {
	var buf [192]byte
	b := append(buf[:0], "HTTP/1.1 200 Connection established\r\n"+wire.HeaderExit+": "...)
	b = append(b, pick.Exit.ID...)
	b = append(b, "\r\nProxy-Status: "+proxyName+"; next-hop="...)
	b = strconv.AppendQuote(b, pick.Exit.ID)
	b = append(b, "\r\n"...)
	if pick.Rebound {
		b = append(b, wire.HeaderSession+": rebound\r\n"...)
	}
	b = append(b, "\r\n"...)
	return c.Write(b)
}

// serveConnect sets up one CONNECT tunnel on a connection the gateway owns.
// br holds what was read past the request head (of head bytes); it is
// flushed to the exit before the relay starts and then returned to the
// pool. It reports whether the relay took the connection over; if not, the
// caller closes it.
func (g *Gateway) serveConnect(c net.Conn, br *bufio.Reader, ans *httpAnswer, target, proxyAuth string, head int64) bool {
	user, pass, ok := parseProxyAuth(proxyAuth)
	if !ok {
		return g.open(c, br, ans, "", "", false, target, head)
	}
	return g.open(c, br, ans, user, pass, true, target, head)
}

// open admits the customer and sets up their tunnel to target, answering in
// their protocol. It reports whether the relay took the connection over.
// head is the bytes of the customer's request, billed with the tunnel.
func (g *Gateway) open(c net.Conn, br *bufio.Reader, ans answerer, user, pass string, haveCreds bool, target string, head int64) bool {
	start := time.Now()
	ctx, cancel, leave := g.setUpContext(c, br)
	defer cancel()
	var a admission
	err := errNoCredentials
	if haveCreds {
		a, err = g.admitCredentials(ctx, user, pass, remoteIP(c.RemoteAddr().String()))
	}
	if err == nil {
		return g.tunnel(ctx, leave, c, br, ans, a, target, start, [2]int64{head, 0})
	}
	leave.stop()
	ev := accessEvent{kind: ans.kind(), dest: target, total: time.Since(start)}
	g.setUpFailed(ctx, c, br, ans, err, ev, false)
	return false
}

// setUpContext returns the context a tunnel's set-up runs under (the
// customer's credentials and limits, the exit's dial and answer) and the
// watch that cancels it when the customer leaves meanwhile: a set-up
// through a slow or hung exit then stops with them, not ExitReplyTimeout
// later, and frees the customer's slot and the exit's. Shutdown's deadline
// cancels it too. The caller stops the watch before it reads or writes c
// or br again, and cancels the context once the set-up is over.
func (g *Gateway) setUpContext(c net.Conn, br *bufio.Reader) (context.Context, context.CancelFunc, *leaveWatch) {
	ctx, cancel := context.WithCancel(g.ctx)
	leave := newLeaveWatch(c, br, cancel)
	leave.arm()
	return ctx, cancel, leave
}

// setUpFailed answers a customer whose tunnel could not be set up, unless
// they left meanwhile (ctx, the set-up's, ended without the gateway's):
// then nothing failed, and the access log says client_closed. ev says what
// is known of the tunnel; failed, that the failure is worth a log line (the
// exits', not the customer's limits or credentials). The caller closes c.
func (g *Gateway) setUpFailed(ctx context.Context, c net.Conn, br *bufio.Reader, ans answerer, err error, ev accessEvent, failed bool) {
	r := replyFor(err)
	if ctx.Err() != nil && g.ctx.Err() == nil {
		r = clientClosed
		g.putBuf(br)
	} else {
		if failed {
			g.logger.Info("tunnel failed", "customer", ev.customer, "pool", ev.pool, "target", ev.dest, "reason", r.reason, "err", err)
		}
		g.refuse(c, br, ans, err, ev.pool)
	}
	ev.status, ev.reason = r.status, r.reason
	g.access(ev)
}

// refuse answers the customer with the error's reply; the caller closes c
// unless the answerer kept it (and br with it) for the next request.
func (g *Gateway) refuse(c net.Conn, br *bufio.Reader, ans answerer, err error, pool string) {
	r := replyFor(err)
	g.metrics.refused(r, pool)
	if g.logger.Enabled(g.ctx, slog.LevelDebug) {
		g.logger.Debug("tunnel refused", "kind", ans.kind(), "remote", c.RemoteAddr().String(), "pool", pool, "status", r.status, "reason", r.reason, "err", err)
	}
	if !ans.refused(c, r) {
		g.putBuf(br)
	}
}

// tunnel sets up the tunnel of an admitted customer under ctx, which leave
// watches (see setUpContext), and hands it to the relay. asked is what the
// customer's connection carried to ask for it, up and down (a CONNECT head;
// a SOCKS5 exchange), billed with the tunnel's bytes (usage.go).
func (g *Gateway) tunnel(ctx context.Context, leave *leaveWatch, c net.Conn, br *bufio.Reader, ans answerer, a admission, target string, start time.Time, asked [2]int64) bool {
	release, limited := g.limit(ctx, a.customer)
	err := limited
	var exitConn net.Conn
	var pick pool.Pick
	var setup time.Duration
	if err == nil {
		exitConn, pick, setup, err = g.dialExit(ctx, &a.crit, target)
		if err != nil {
			release()
		}
	}
	leave.stop()
	if err == nil && ctx.Err() != nil {
		// The customer left (or Shutdown's deadline passed) just as the
		// exit answered.
		release()
		exitConn.Close()
		err = fmt.Errorf("tunnel through exit %s: %w", pick.Exit.ID, ctx.Err())
	}
	if err != nil {
		ev := accessEvent{kind: ans.kind(), customer: a.customer.User, pool: a.crit.Pool, target: a.targeting(), dest: target,
			setup: setup, total: time.Since(start)}
		if pick.Exit != nil {
			ev.exit, ev.egress = pick.Exit.ID, egressString(pick)
		}
		g.setUpFailed(ctx, c, br, ans, err, ev, limited == nil)
		return false
	}
	id := pick.Exit.ID
	t := &tunnel{conns: [2]net.Conn{c, exitConn}, customer: a.customer, pool: a.crit.Pool, exit: id, started: start}
	g.tunnels.Store(t, struct{}{})
	fail := func() bool {
		g.tunnels.Delete(t)
		release()
		exitConn.Close()
		return false
	}
	replied, err := ans.established(c, pick)
	if err != nil {
		g.putBuf(br)
		return fail()
	}
	// Bytes the customer sent right behind the CONNECT head go first.
	early := int64(br.Buffered())
	if early > 0 {
		buf, _ := br.Peek(int(early))
		var err error
		if lt, ok := exitConn.(*upstream.LinkTunnel); ok {
			err = lt.SendBytes(buf)
		} else {
			_, err = exitConn.Write(buf)
		}
		if err != nil {
			g.putBuf(br)
			return fail()
		}
	}
	g.putBuf(br)
	// Bytes the destination sent that arrived with the exit's reply go to
	// the customer first; then both sides are raw TCP again and splice.
	// (On a link they are frames: the relay decodes them first.)
	var earlyDown int64
	if ec, ok := exitConn.(*upstream.EarlyConn); ok {
		if _, err := c.Write(ec.Early); err != nil {
			return fail()
		}
		earlyDown = int64(len(ec.Early))
		exitConn = ec.Conn
		t.conns[1] = exitConn
	}

	g.pool.TunnelOpened(id)
	g.metrics.tunnelOpened(ans.kind(), a.crit.Pool, pick.Exit.DC, id, setup)
	g.track(exitConn)
	g.wg.Add(1)
	t.done = func(up, down int64) {
		defer g.wg.Done()
		release()
		up += early + asked[0]
		down += earlyDown + asked[1] + int64(replied)
		g.settle(t, up, down)
		g.untrack(c)
		g.untrack(exitConn)
		g.pool.TunnelClosed(id)
		g.metrics.tunnelClosed(a.crit.Pool, id)
		g.access(accessEvent{kind: ans.kind(), customer: a.customer.User, pool: a.crit.Pool, target: a.targeting(),
			exit: id, egress: egressString(pick), dest: target, status: 200, up: up, down: down,
			setup: setup, total: time.Since(start)})
	}
	g.relay(t)
	return true
}

// dialExit picks an exit and opens a tunnel through it to target, trying
// other exits when one fails for its own reasons. Nothing has been sent to
// the customer yet, so a retry is invisible to them.
func (g *Gateway) dialExit(ctx context.Context, crit *pool.Criteria, target string) (net.Conn, pool.Pick, time.Duration, error) {
	var conn net.Conn
	pick, setup, err := g.tryExits(ctx, crit, func(pick pool.Pick, up *upstream.Exit) (err error) {
		conn, err = up.Tunnel(ctx, target, pick.Egress)
		if err != nil {
			err = fmt.Errorf("tunnel through exit %s: %w", pick.Exit.ID, err)
		}
		return err
	}, nil)
	return conn, pick, setup, err
}

// tryExits runs try on an exit matching crit, and on others while it fails
// for the exit's own reasons (faultOf) and again allows it (nil: always),
// at most MaxAttempts in all; it reports each outcome to the pool, except
// the customer's own faults, which say nothing of the exit. It returns the
// last exit tried, how long it took to answer, and try's error, or the
// pool's when no exit was left to try.
func (g *Gateway) tryExits(ctx context.Context, crit *pool.Criteria, try func(pool.Pick, *upstream.Exit) error, again func() bool) (pool.Pick, time.Duration, error) {
	var tried [10]string
	var lastErr error
	for attempt := 0; attempt < g.cfg.MaxAttempts; attempt++ {
		crit.Exclude = tried[:attempt]
		pick, err := g.pool.Pick(ctx, *crit)
		if err != nil {
			return pool.Pick{}, 0, cmp.Or(lastErr, err)
		}
		id := pick.Exit.ID
		tried[attempt] = id
		up, err := g.exits.For(pick.Exit)
		if err != nil {
			g.pool.Report(id, pool.ExitFailed, 0)
			lastErr = err
			continue
		}
		t0 := time.Now()
		err = try(pick, up)
		setup := time.Since(t0)
		switch {
		case err == nil:
			g.pool.Report(id, pool.OK, setup)
			return pick, setup, nil
		case ctx.Err() != nil:
			// The customer left, or the gateway is stopping, while the
			// exit was at work: that says nothing about the exit, and a
			// customer who gives up on slow sites must not eject it.
			return pick, setup, err
		}
		switch faultOf(err) {
		case customerFault:
			// A malformed request or body, or a customer who stopped
			// sending: any exit would have failed the same, and none is
			// marked for it.
			return pick, setup, err
		case destinationFault:
			g.pool.Report(id, pool.DestFailed, setup)
			return pick, setup, err
		}
		g.pool.Report(id, pool.ExitFailed, setup)
		lastErr = err
		if ctx.Err() != nil || again != nil && !again() {
			break
		}
		g.logger.Warn("exit failed, trying another", "exit", id, "attempt", attempt+1, "err", err)
	}
	return pool.Pick{}, 0, lastErr
}

// readConnectHead reads a CONNECT request head from br and returns its
// authority-form target, its Proxy-Authorization value and its length.
// Other headers are read and dropped: nothing of a CONNECT head goes further
// than the gateway.
func readConnectHead(br *bufio.Reader) (target, proxyAuth string, n int, err error) {
	target, n, err = wire.ReadConnectHead(br, func(k, v []byte) {
		if wire.HeaderIs(k, "Proxy-Authorization") {
			proxyAuth = string(v)
		}
	})
	if err != nil {
		return "", "", 0, fmt.Errorf("%w: %w", errBadTarget, err)
	}
	return target, proxyAuth, n, nil
}

// connectTarget validates a CONNECT or SOCKS5 request's authority-form
// target by the farm's rules (wire.ParseTarget), which every exit applies
// too: what an exit would refuse as malformed never reaches one.
func connectTarget(t string) (string, error) {
	if err := wire.CheckTarget(t); err != nil {
		return "", fmt.Errorf("%w: %w", errBadTarget, err)
	}
	return t, nil
}
