package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/farmgate/farmgate/internal/dataplane/link"
	"github.com/farmgate/farmgate/internal/dataplane/readiness"
)

// originClient sends http:// requests to origins through tunnels across
// one exit (a farmgate exit, or any SOCKS5 one), and keeps those tunnels
// for the next request from the same egress IP to the same origin, as a
// browser keeps its connections. The exit then only relays bytes: it
// parses no request and runs no HTTP client of its own, its largest cost
// per request before (docs/performance.md). A bodiless request to a new
// origin goes on a kept link right behind the CONNECT, so it costs one
// round trip to the exit, as sending it to the exit's HTTP proxy did.
type originClient struct {
	// dial opens a tunnel to target, sending first through it when it can
	// (sent says so).
	dial func(ctx context.Context, target string, first []byte) (conn net.Conn, sent bool, err error)
	// links takes back the link of a tunnel that ended; nil when the exit
	// has none.
	links   *linkPool
	timeout time.Duration // for the CONNECT reply and the answer's head
	// budget counts the idle origin tunnels of every exit, which together
	// stay under maxIdleOrigins: under rotation across many exits, IPs and
	// origins, most tunnels are never asked for again.
	budget *atomic.Int64
	// What each request went over (farmgate_origin_tunnels_total).
	kept, fresh prometheus.Counter
	// ending counts the tunnels retire is ending (farmgate_origin_tunnels_ending).
	ending prometheus.Gauge
	// retiring counts retire's goroutines: Set.Close waits for them.
	retiring sync.WaitGroup

	mu     sync.Mutex
	idle   map[originKey][]idle[*exitConn] // oldest first
	n      int                             // idle connections in all
	max    int
	closed bool
}

// originKey says which idle tunnel can carry a request: one from the same
// egress IP to the same origin.
type originKey struct {
	egress netip.Addr
	target string // host:port
	tls    bool   // https:// over the tunnel (SOCKS5 exits)
}

// originHome is where a tunnel goes back after an answer.
type originHome struct {
	c   *originClient
	key originKey
}

func (h originHome) put(ec *exitConn) { h.c.put(h.key, ec) }

// done ends a tunnel whose answer said it is the last (Connection: close,
// or a body that ends with the connection); its link can still carry the
// next tunnel.
func (h originHome) done(ec *exitConn) { h.c.retire(ec, true) }

// originKeepIdle is how long an idle tunnel to an origin is kept. Shorter
// than keepIdle: what is reused is mostly a session's or a burst's next
// request, and a miss costs one round trip to the exit, as before.
const originKeepIdle = 30 * time.Second

// maxIdleOrigins caps the idle origin tunnels of a gateway, all exits
// together. Each holds a descriptor here, one at the exit and one at the
// origin, and a few hundred bytes of memory.
const maxIdleOrigins = 4096

// maxIdleOriginsPerExit caps them per exit (below --max-idle-exit-conns if
// that is lower). An idle origin tunnel holds one of the exit's tunnel
// slots (--max-tunnels, 10 000 by default), and an exit serves many
// gateways: 40 of them at this cap take half its slots.
const maxIdleOriginsPerExit = 128

// readers holds the readers of origins' and exits' answers: a connection
// holds one only while it reads (an idle origin tunnel holds none).
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func newOriginClient(dial func(context.Context, string, []byte) (net.Conn, bool, error), links *linkPool, timeout time.Duration, max int, budget *atomic.Int64, m *metrics) *originClient {
	return &originClient{dial: dial, links: links, timeout: timeout, max: min(max, maxIdleOriginsPerExit), budget: budget, idle: map[originKey][]idle[*exitConn]{},
		kept: m.origins.WithLabelValues("kept"), fresh: m.origins.WithLabelValues("new"), ending: m.ending}
}

// RoundTrip sends req from egress through the exit to its origin (over TLS
// for https://, which only SOCKS5 exits take this way). Errors after the
// tunnel is up are the destination's (an ExitError with a destination_
// reason): the exit only relays there.
func (c *originClient) RoundTrip(req *http.Request, egress netip.Addr) (*http.Response, error) {
	ctx := req.Context()
	secure := req.URL.Scheme == "https"
	target := req.URL.Host
	if req.URL.Port() == "" {
		port := "80"
		if secure {
			port = "443"
		}
		target = net.JoinHostPort(req.URL.Hostname(), port)
	}
	key := originKey{egress: egress, target: target, tls: secure}
	withBody := req.Body != nil && req.Body != http.NoBody
	var head []byte
	send := req.Write // a body streams behind the head while the answer is read
	if !withBody {
		// The whole request is its head: it can leave with the CONNECT.
		buf := heads.Get().(*bytes.Buffer)
		defer putHead(buf) // nothing keeps head past the round trip
		if err := req.Write(buf); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		head = buf.Bytes()
		send = func(w io.Writer) error { _, err := w.Write(head); return err }
	}
	// A request that cannot be sent twice never goes on a kept tunnel:
	// the origin may close one just as the request leaves, and then there
	// is no knowing whether it acted on it. Nor can a body be sent twice.
	replayable := isReplayable(req) && !withBody
	for attempt := 0; ; attempt++ {
		var ec *exitConn
		reused := false
		if attempt == 0 && replayable {
			// A retry takes a fresh tunnel: the kept ones may have been
			// closed by the same origin at the same time.
			ec, reused = c.get(key)
		}
		write := send
		if reused {
			c.kept.Inc()
		} else {
			c.fresh.Inc()
			var first []byte
			if !secure {
				first = head
			}
			conn, sent, err := c.dial(withEgress(ctx, egress), target, first)
			if err != nil {
				return nil, err
			}
			if secure {
				tc := tls.Client(conn, &tls.Config{ServerName: req.URL.Hostname(), NextProtos: []string{"http/1.1"}})
				if err := tc.HandshakeContext(ctx); err != nil {
					conn.Close()
					return nil, destinationError(fmt.Errorf("tls with %s: %w", target, err))
				}
				conn = tc
			}
			ec = &exitConn{Conn: conn, home: originHome{c: c, key: key}}
			if sent {
				write = nil
			}
		}
		resp, err := exchange(ctx, ec, req, write, c.timeout)
		if err == nil {
			return resp, nil
		}
		ec.Close()
		if reused && attempt == 0 && ctx.Err() == nil && retryable(req, err) {
			continue // the origin closed the idle tunnel as we sent
		}
		if errors.As(err, new(*bodyError)) {
			return nil, err // the customer's body, not the destination
		}
		return nil, destinationError(err)
	}
}

// heads hold the request heads RoundTrip writes.
var heads = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putHead(b *bytes.Buffer) {
	if b.Cap() > 64<<10 {
		return // a rare huge head: let it go
	}
	b.Reset()
	heads.Put(b)
}

// destinationError marks an error of an exchange through an open tunnel as
// the destination's fault.
func destinationError(err error) error {
	reason := "destination_unreachable"
	status := http.StatusBadGateway
	if isTimeout(err) {
		reason, status = "destination_timeout", http.StatusGatewayTimeout
	}
	return fmt.Errorf("%w: %w", &ExitError{Status: status, Reason: reason}, err)
}

// get returns the newest idle tunnel for key that is still open.
func (c *originClient) get(key originKey) (*exitConn, bool) {
	now := time.Now()
	for {
		c.mu.Lock()
		list := c.idle[key]
		n := len(list)
		if n == 0 || now.Sub(list[n-1].since) > originKeepIdle {
			c.mu.Unlock()
			return nil, false
		}
		ec := list[n-1].c
		list[n-1] = idle[*exitConn]{}
		if n == 1 {
			delete(c.idle, key)
		} else {
			c.idle[key] = list[:n-1]
		}
		c.n--
		c.budget.Add(-1)
		c.mu.Unlock()
		// The origin may have closed it while it sat idle: an exit framed
		// that as an end (the link is then free at once), a plain tunnel
		// reads EOF.
		switch err := poll(ec); {
		case err == nil:
			return ec, true
		case errors.Is(err, io.EOF):
			c.retire(ec, false)
		default:
			ec.Close()
		}
	}
}

// poll looks without waiting whether anything arrived on an idle tunnel;
// nil means nothing did.
func poll(ec *exitConn) error {
	if ec.br != nil && ec.br.Buffered() > 0 {
		return fmt.Errorf("%d bytes arrived on an idle connection", ec.br.Buffered())
	}
	if lc, ok := ec.Conn.(*link.Conn); ok {
		return lc.Poll()
	}
	return waitNone(ec.Conn)
}

// put keeps ec, at the end of an answer, for key's next request.
func (c *originClient) put(key originKey, ec *exitConn) {
	if ec.br.Buffered() > 0 {
		ec.Close() // the origin said more than its answer
		return
	}
	ec.br.Reset(nil)
	readers.Put(ec.br)
	ec.br = nil
	c.mu.Lock()
	if c.closed || c.n >= c.max || c.budget.Load() >= maxIdleOrigins {
		c.mu.Unlock()
		c.retire(ec, true)
		return
	}
	c.idle[key] = append(c.idle[key], idle[*exitConn]{c: ec, since: time.Now()})
	c.n++
	c.budget.Add(1)
	c.mu.Unlock()
}

// retire ends a tunnel that sits between two answers. On a link it asks
// the exit to end it (the exit closes its connection to the origin) so the
// link can carry the next tunnel. Without wait, the exit must have ended
// its direction already (Poll said so), and End returns at once; with
// wait the origin may still have to close, which End waits for off the
// caller's goroutine.
func (c *originClient) retire(ec *exitConn, wait bool) {
	lc, ok := ec.Conn.(*link.Conn)
	if !ok || c.links == nil {
		ec.Close()
		return
	}
	// Until the link is back (or closed) the tunnel counts as ending: the
	// customer has the whole answer already, but the link is not free.
	c.ending.Inc()
	end := func() {
		defer c.ending.Dec()
		if tc := lc.End(time.Now().Add(time.Second)); tc != nil {
			c.links.put(tc)
		}
	}
	if !wait || lc.Ended() {
		end() // returns at once
		return
	}
	c.retiring.Add(1)
	go func() { // bounded by End's deadline
		defer c.retiring.Done()
		end()
	}()
}

// sweep ends the tunnels idle longer than originKeepIdle.
func (c *originClient) sweep(now time.Time) {
	var old []*exitConn
	c.mu.Lock()
	for k, list := range c.idle {
		i := 0
		for i < len(list) && now.Sub(list[i].since) > originKeepIdle {
			old = append(old, list[i].c)
			i++
		}
		if i == len(list) {
			delete(c.idle, k)
		} else if i > 0 {
			c.idle[k] = append(list[:0], list[i:]...)
		}
		c.n -= i
		c.budget.Add(int64(-i))
	}
	c.mu.Unlock()
	for _, ec := range old {
		c.retire(ec, true)
	}
}

// closeIdle closes every idle tunnel; the client keeps none from now on.
func (c *originClient) closeIdle() {
	c.mu.Lock()
	c.closed = true
	all := c.idle
	c.budget.Add(int64(-c.n))
	c.idle, c.n = map[originKey][]idle[*exitConn]{}, 0
	c.mu.Unlock()
	for _, list := range all {
		for _, e := range list {
			e.c.Close()
		}
	}
}

// waitNone reports, without waiting, whether c is still open with nothing
// to read: nil when so.
func waitNone(c net.Conn) error {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil // the exchange finds out, and retries a replayable request
	}
	var b [1]byte
	n, err := readiness.Peek(tc, b[:], true)
	if err != nil {
		return err
	}
	if n > 0 {
		return errors.New("bytes arrived on an idle connection")
	}
	return nil
}
