package gateway

import (
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// idleGuard ends a forwarded request whose customer moved no byte either
// way for IdleTimeout, as the watcher does for tunnels: each read of the
// request body and each write of the answer pushes both of the customer
// connection's deadlines on. When one passes, the blocked read or write
// fails (a read also cancels the request), and the exit's slot is freed.
//
// The deadlines move only once they are less than idle/2 away, so a short
// request sets them once, not at every read and write; the cut comes
// after idle/2 to idle of silence.
type idleGuard struct {
	set  func(time.Time) error // moves both deadlines of the customer connection
	idle time.Duration
	last atomic.Int64 // UnixNano of the deadlines' last move; body reads run on the transport's goroutine
}

func (g *idleGuard) touch() {
	if last := g.last.Load(); last != 0 && time.Now().UnixNano()-last < int64(g.idle/2) {
		return
	}
	g.reset()
}

// reset moves the deadlines to idle from now.
func (g *idleGuard) reset() {
	now := time.Now()
	g.last.Store(now.UnixNano())
	_ = g.set(now.Add(g.idle))
}

type guardedBody struct {
	io.ReadCloser
	guard *idleGuard
}

func (b guardedBody) Read(p []byte) (int, error) {
	b.guard.touch()
	return b.ReadCloser.Read(p)
}

// forward sends an absolute-form request through an exit, trying another
// exit when one fails before any of the request body was sent. It always
// returns a response: the origin's, or an error reply.
func (g *Gateway) forward(req *http.Request, a *admission) *http.Response {
	start := time.Now()
	release, err := g.limit(req.Context(), a.customer)
	if err != nil {
		r := replyFor(err)
		g.metrics.refused(r, a.crit.Pool)
		g.access(accessEvent{kind: "http", customer: a.customer.User, pool: a.crit.Pool, target: a.targeting(),
			dest: req.URL.Host, status: r.status, reason: r.reason})
		return r.response(req)
	}
	released := false
	defer func() {
		if !released {
			release()
		}
	}()
	body := &trackedBody{rc: req.Body}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody {
		req.Body = body
		// The transport may still be sending the body while the answer
		// streams back, so the body is closed once the answer is done,
		// or here if there is none.
		defer func() {
			if !released {
				body.rc.Close()
			}
		}()
	}
	ctx := req.Context()
	var resp *http.Response
	pick, setup, err := g.tryExits(ctx, &a.crit, func(pick pool.Pick, up *upstream.Exit) (err error) {
		g.pool.TunnelOpened(pick.Exit.ID)
		resp, err = up.RoundTrip(req, pick.Egress)
		if err != nil {
			g.pool.TunnelClosed(pick.Exit.ID)
		}
		return err
	}, func() bool { return !body.touched.Load() }) // bytes of the body left: never send it twice
	if err == nil {
		id := pick.Exit.ID
		g.metrics.tunnelOpened("http", a.crit.Pool, pick.Exit.DC, id, setup)
		rb := &releaseBody{ReadCloser: resp.Body, up: &body.n}
		if g.meter != nil {
			rb.meter = func(up, down int64) { g.meter.Add(a.customer.User, a.crit.Pool, up, down) }
		}
		if recheck := expiresAt(a.customer); g.meter != nil || recheck != 0 {
			rb.cut = func() error {
				if g.meter != nil && g.meter.OverQuota(a.customer) {
					g.logger.Info("customer over quota, cutting answer", "customer", a.customer.User, "exit", id)
					return errQuotaExceeded
				}
				if now := g.cfg.Now(); recheck != 0 && now.UnixNano() >= recheck {
					next, ok := g.renewedUntil(a.customer.User, now)
					if !ok {
						g.logger.Info("customer expired, cutting answer", "customer", a.customer.User, "exit", id)
						return errExpired
					}
					recheck = next
				}
				return nil
			}
		}
		status := resp.StatusCode
		released = true // the response body now holds the slot
		rb.release = func() {
			if hasBody {
				body.rc.Close()
			}
			release()
			g.pool.TunnelClosed(id)
			g.metrics.tunnelClosed(a.crit.Pool, id)
			// The usage is the bytes on the customer's connection
			// (usage.go), known once the answer is written: the
			// meter has had the bodies so far, and gets the rest then.
			metered := rb.metered
			ev := accessEvent{kind: "http", customer: a.customer.User, pool: a.crit.Pool, target: a.targeting(),
				exit: id, egress: egressString(pick), dest: req.URL.Host, status: status, setup: setup, total: time.Since(start)}
			settle := func(up, down int64) {
				if g.meter != nil {
					g.meter.Add(a.customer.User, a.crit.Pool, max(up-metered[0], 0), max(down-metered[1], 0))
				}
				g.metrics.bytes(a.crit.Pool, id, a.customer.User, up, down)
				ev.up, ev.down = up, down
				g.access(ev)
			}
			if b := billFrom(req.Context()); b != nil {
				b.owe(settle)
			} else {
				settle(body.n.Load(), rb.n)
			}
		}
		resp.Body = rb
		cleanResponse(resp.Header)
		resp.Header.Set(wire.HeaderExit, id)
		if pick.Rebound {
			resp.Header.Set(wire.HeaderSession, "rebound")
		}
		return resp
	}
	if ctx.Err() != nil && g.ctx.Err() == nil || customerLeft(err) {
		// The customer left: not a failure to count or log as one.
		ev := accessEvent{kind: "http", customer: a.customer.User, pool: a.crit.Pool, target: a.targeting(),
			dest: req.URL.Host, status: clientClosed.status, reason: clientClosed.reason, total: time.Since(start)}
		if pick.Exit != nil {
			ev.exit, ev.egress, ev.setup = pick.Exit.ID, egressString(pick), setup
		}
		g.access(ev)
		if body.failed.Load() {
			// One who only half-closed still reads: their request
			// was cut short.
			r := refuse("bad_request")
			r.detail = "request body cut short"
			return r.response(req)
		}
		return clientClosed.response(req)
	}
	if pick.Exit != nil {
		// The destination failed, or the customer's request did, not
		// the exit.
		r := replyFor(err)
		g.metrics.refused(r, a.crit.Pool)
		g.access(accessEvent{kind: "http", customer: a.customer.User, pool: a.crit.Pool, target: a.targeting(),
			exit: pick.Exit.ID, egress: egressString(pick), dest: req.URL.Host, status: r.status, reason: r.reason,
			setup: setup, total: time.Since(start)})
		return r.response(req)
	}
	lastErr := err
	r := replyFor(lastErr)
	g.metrics.refused(r, a.crit.Pool)
	g.access(accessEvent{kind: "http", customer: a.customer.User, pool: a.crit.Pool, target: a.targeting(),
		dest: req.URL.Host, status: r.status, reason: r.reason, total: time.Since(start)})
	g.logger.Info("request failed", "customer", a.customer.User, "pool", a.crit.Pool, "reason", r.reason, "err", lastErr)
	return r.response(req)
}

// trackedBody notes whether the transport read any of the request body,
// keeps the transport from closing it so a retry can still send it, and
// types the errors of its reads as the customer's (customerError): the
// transport returns them as they are, and neither a malformed body nor a
// customer who stops sending is the exit's doing.
type trackedBody struct {
	rc      io.ReadCloser
	touched atomic.Bool  // read by the transport's writer goroutine
	n       atomic.Int64 // bytes read
	failed  atomic.Bool  // a read failed: the body is malformed or cut short
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.touched.Store(true)
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	if err != nil && err != io.EOF {
		b.failed.Store(true)
		err = &customerError{err}
	}
	return n, err
}

func (b *trackedBody) Close() error { return nil }

// meterEvery is how many bytes of an answer pass between two visits to the
// meter: a long download is cut soon after the customer's quota is used
// up (or the account expired), as a tunnel is by the watcher, not only
// counted when it ends.
const meterEvery = 1 << 20

// releaseBody counts the response body, meters it (and the request body)
// every meterEvery bytes, and runs release once when it is closed.
type releaseBody struct {
	io.ReadCloser
	release func()
	done    bool
	n       int64
	up      *atomic.Int64 // request body bytes sent
	// meter (if any) takes bytes it has not seen yet; cut says why the
	// answer must stop (quota used up, account expired), or nil.
	meter   func(up, down int64)
	cut     func() error
	metered [2]int64 // up and down already handed to meter
}

func (b *releaseBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if b.n-b.metered[1] >= meterEvery {
		b.meterNow()
		if b.cut != nil {
			if err := b.cut(); err != nil {
				return n, fmt.Errorf("answer cut: %w", err)
			}
		}
	}
	return n, err
}

// meterNow hands the meter what it has not seen yet.
func (b *releaseBody) meterNow() {
	up := b.up.Load()
	if b.meter != nil {
		b.meter(up-b.metered[0], b.n-b.metered[1])
	}
	b.metered = [2]int64{up, b.n}
}

func (b *releaseBody) Close() error {
	if !b.done {
		b.done = true
		b.release()
	}
	return b.ReadCloser.Close()
}
