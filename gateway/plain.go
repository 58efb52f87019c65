// Plain requests: a bodiless GET or HEAD in absolute form, most of what
// customers send without CONNECT, is served here on the raw connection.
// net/http's server and goproxy cost the gateway about a fifth of its CPU
// per request on top (a goroutine that watches the connection during each
// request, the header maps copied, a flush through three writers); anything
// less plain goes to them, with the rest of the connection.

package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/farmgate/farmgate/internal/dataplane/handoff"
	"github.com/farmgate/farmgate/internal/dataplane/rawio"
	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// servePlain serves plain requests on c while they come; br holds what was
// read of the first. It reports whether it handed c over (to the HTTP
// server, at the first request that is not plain); if not, the caller
// closes c.
func (g *Gateway) servePlain(c net.Conn, br *bufio.Reader) (handedOff bool) {
	// Requests of one connection share a context: it ends with the
	// connection, when Shutdown's deadline cuts everything, or when the
	// customer moved no byte for IdleTimeout. Nothing reads the connection
	// while a request is out, so a read deadline could not notice that; the
	// timer cancels the request, and the deadline it sets unblocks a write.
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	bill := &plainBill{}
	ctx = withBiller(ctx, bill)
	timer := time.AfterFunc(g.cfg.IdleTimeout, func() {
		cancel()
		c.SetDeadline(time.Unix(1, 0))
	})
	defer timer.Stop()
	guard := idleGuard{idle: g.cfg.IdleTimeout, set: func(d time.Time) error {
		timer.Reset(time.Until(d))
		return nil
	}}
	leave := newLeaveWatch(c, br, cancel)
	remote := c.RemoteAddr().String()
	readDeadline := true // serveConn's, for the first head
	for first := true; ; first = false {
		if !first && br.Buffered() == 0 && !g.waitRequest(c, br, &guard) {
			return false
		}
		req, n, setDeadline, err := readPlain(c, br, g.cfg.ReadHeaderTimeout)
		readDeadline = readDeadline || setDeadline
		if errors.Is(err, errNotPlain) {
			// The HTTP server owns the connection from here, with what
			// is buffered.
			timer.Stop()
			c.SetDeadline(time.Time{})
			g.untrack(c)
			if !g.httpLn.Push(newServedConn(&handoff.Conn{Conn: c, R: br})) {
				c.Close()
			}
			return true
		}
		if err != nil {
			g.putBuf(br)
			return false
		}
		br.Discard(n)
		if readDeadline {
			c.SetReadDeadline(time.Time{})
			readDeadline = false
		}
		guard.touch()
		req = req.WithContext(ctx)
		req.RemoteAddr = remote
		leave.arm()
		resp := g.serveHTTP(req)
		keep, written := g.writePlain(c, req, resp, &guard)
		leave.stop()
		bill.pay(int64(n), written)
		if !keep || g.isClosing() {
			g.putBuf(br)
			return false
		}
	}
}

// leaveWatchAfter is how long a request is out before the gateway watches
// for its customer leaving: most answers come sooner, and need no watch.
const leaveWatchAfter = 50 * time.Millisecond

// leaveWatch notices a customer who closes the connection while a request is
// out (net/http's server reads in the background for this), and cancels the
// request: a customer who gives up on a slow origin frees the exit's slot
// and their own concurrency at once, not when the origin answers.
type leaveWatch struct {
	c       net.Conn
	br      *bufio.Reader
	cancel  context.CancelFunc
	timer   *time.Timer
	armed   bool          // since arm, until stop (the request's goroutine)
	done    chan struct{} // a started watch ended
	aborted atomic.Bool   // stop ended the watch: not the customer leaving
}

func newLeaveWatch(c net.Conn, br *bufio.Reader, cancel context.CancelFunc) *leaveWatch {
	w := &leaveWatch{c: c, br: br, cancel: cancel, done: make(chan struct{}, 1)}
	w.timer = time.AfterFunc(time.Hour, w.watch)
	w.timer.Stop()
	return w
}

// arm starts watching leaveWatchAfter from now, unless bytes of the next
// request are already buffered (the customer is still there, and the
// buffer is not the watch's to fill).
func (w *leaveWatch) arm() {
	if w.br.Buffered() == 0 {
		w.armed = true
		w.timer.Reset(leaveWatchAfter)
	}
}

// watch waits for the customer's next bytes (left in br for the next
// request) or the end of the connection, which cancels the request.
func (w *leaveWatch) watch() {
	if _, err := w.br.Peek(1); err != nil && !w.aborted.Load() {
		w.cancel()
	}
	w.done <- struct{}{}
}

// stop ends the watch; the connection is the caller's again.
func (w *leaveWatch) stop() {
	if !w.armed {
		return
	}
	w.armed = false
	if w.timer.Stop() {
		return // it had not started
	}
	w.aborted.Store(true)
	w.c.SetReadDeadline(time.Unix(1, 0))
	<-w.done
	w.c.SetReadDeadline(time.Time{})
	w.aborted.Store(false)
}

// waitRequest waits, up to IdleTimeout, for the first bytes of the next
// request on a kept-alive connection. Shutdown closes a connection that
// waits here at once, as net/http's server does with its idle ones.
func (g *Gateway) waitRequest(c net.Conn, br *bufio.Reader, guard *idleGuard) bool {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		g.putBuf(br)
		return false
	}
	g.idle[c] = struct{}{}
	g.mu.Unlock()
	guard.reset()
	_, err := br.Peek(1)
	g.mu.Lock()
	_, still := g.idle[c] // not there: Shutdown closed it
	delete(g.idle, c)
	g.mu.Unlock()
	if err != nil || !still {
		g.putBuf(br)
		return false
	}
	return true
}

// serveHTTP answers one absolute-form request: it admits the customer and
// forwards the request, or says why not. The response's body must be
// closed.
func (g *Gateway) serveHTTP(req *http.Request) *http.Response {
	// The exits' target rules first: a URL an exit would refuse is the
	// customer's 400 before it costs a credential check or reaches one.
	if _, err := wire.URLTarget(req.URL); err != nil {
		r := replyFor(fmt.Errorf("%w: %w", errBadTarget, err))
		g.metrics.refused(r, "")
		g.access(accessEvent{kind: "http", dest: req.URL.Host, status: r.status, reason: r.reason})
		return r.response(req)
	}
	a, err := g.admit(req.Context(), req.Header.Get("Proxy-Authorization"), remoteIP(req.RemoteAddr))
	if err != nil {
		r := replyFor(err)
		g.metrics.refused(r, "")
		g.access(accessEvent{kind: "http", dest: req.URL.Host, status: r.status, reason: r.reason})
		return r.response(req)
	}
	cleanRequest(req.Header)
	req.RequestURI = ""
	return g.forward(req, &a)
}

// writePlain writes resp to the customer, streaming its body as it comes,
// and closes the body. It reports whether the connection can carry the
// next request, and how many bytes it wrote.
func (g *Gateway) writePlain(c net.Conn, req *http.Request, resp *http.Response, guard *idleGuard) (keep bool, written int64) {
	defer resp.Body.Close()
	bufs := plainBufs.Get().(*plainBuf)
	defer plainBufs.Put(bufs)

	h := resp.Header
	withBody := req.Method != http.MethodHead && bodyAllowed(resp.StatusCode)
	chunked := false
	if withBody {
		switch {
		case len(resp.Trailer) > 0:
			chunked = true
			delete(h, "Content-Length")
		case resp.ContentLength >= 0:
			if _, ok := h["Content-Length"]; !ok {
				h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
			}
		default:
			chunked = true
		}
	}
	// A gateway that is shutting down says so, as net/http's server does:
	// the customer sends the next request on a new connection.
	keep = !req.Close && !g.isClosing()
	head := appendHead(bufs.head[:0], resp, chunked, !keep)
	bufs.head = head
	if !withBody {
		guard.touch()
		n, err := rawio.Write(c, head)
		written = int64(n)
		if err != nil {
			return false, written
		}
		// The body is empty; reading its end gives the tunnel back.
		if n, err := resp.Body.Read(bufs.body); n > 0 || err != io.EOF {
			return false, written
		}
		return keep, written
	}

	// Each read of the body leaves at once (the head with the first), so
	// it streams as the origin produces it.
	buf := bufs.body
	for {
		n, rerr := resp.Body.Read(buf)
		// An empty body still ends a chunked answer, and still sends the
		// head of one with a length (0).
		if n > 0 || rerr == io.EOF && (chunked || head != nil) {
			out := append(net.Buffers(bufs.out[:0]), head)
			head = nil
			if chunked {
				if n > 0 {
					out = append(out, append(strconv.AppendInt(bufs.chunkHead[:0], int64(n), 16), '\r', '\n'), buf[:n], crlf)
				}
				if rerr == io.EOF {
					out = append(out, appendTrailer(nil, resp.Trailer))
				}
			} else {
				out = append(out, buf[:n])
			}
			guard.touch()
			n, err := rawio.Writev(c, &out)
			written += n
			if err != nil {
				return false, written
			}
		}
		if rerr == io.EOF {
			return keep, written
		}
		if rerr != nil {
			// The answer broke off: the customer can only tell from the
			// connection closing before its end.
			return false, written
		}
	}
}

var crlf = []byte("\r\n")

// plainBuf holds what writePlain needs per response.
type plainBuf struct {
	head, body []byte
	out        [5][]byte // what one write sends: head, chunk size, data, CRLF, trailer
	chunkHead  [20]byte
}

var plainBufs = sync.Pool{New: func() any {
	return &plainBuf{head: make([]byte, 0, 1024), body: make([]byte, 32<<10)}
}}

// appendHead appends the status line and header of resp, as net/http's
// server writes them: sorted, with a Date when the origin gave none.
func appendHead(b []byte, resp *http.Response, chunked, closing bool) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.StatusCode), 10)
	b = append(b, ' ')
	if text := http.StatusText(resp.StatusCode); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(resp.StatusCode), 10)
	}
	b = append(b, crlf...)
	var keys [32]string
	ks := keys[:0]
	for k := range resp.Header {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	for _, k := range ks {
		for _, v := range resp.Header[k] {
			b = appendField(b, k, v)
		}
	}
	if _, ok := resp.Header["Date"]; !ok {
		b = append(b, "Date: "...)
		b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, crlf...)
	}
	if len(resp.Trailer) > 0 {
		b = append(b, "Trailer: "...)
		i := 0
		for k := range resp.Trailer {
			if i > 0 {
				b = append(b, ", "...)
			}
			b = append(b, k...)
			i++
		}
		b = append(b, crlf...)
	}
	if chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, crlf...)
}

// appendTrailer appends the last chunk and the trailer fields.
func appendTrailer(b []byte, t http.Header) []byte {
	b = append(b, "0\r\n"...)
	for k, vs := range t {
		for _, v := range vs {
			b = appendField(b, k, v)
		}
	}
	return append(b, crlf...)
}

// appendField appends one header line; a value cannot break the head (as
// with net/http, CR and LF become spaces).
func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			b = append(b, ' ')
		} else {
			b = append(b, c)
		}
	}
	return append(b, crlf...)
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// errNotPlain: the request is not one servePlain serves.
var errNotPlain = errors.New("not a plain request")

// readPlain reads the next request head into br's buffer and parses it; n
// is the head's length, which the caller discards once it takes the
// request, and deadline says whether it set a read deadline (the header
// timeout, once a head came in parts). The head must fit the buffer: a
// longer one is not plain.
func readPlain(c net.Conn, br *bufio.Reader, headerTimeout time.Duration) (req *http.Request, n int, deadline bool, err error) {
	for {
		buf, _ := br.Peek(br.Buffered())
		req, n, err = parsePlain(buf)
		if !errors.Is(err, errMore) {
			return req, n, deadline, err
		}
		if br.Buffered() == br.Size() {
			return nil, 0, deadline, errNotPlain
		}
		if !deadline {
			// The head has started: the rest of it comes within the
			// header timeout.
			c.SetReadDeadline(time.Now().Add(headerTimeout))
			deadline = true
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return nil, 0, deadline, err
		}
	}
}

var errMore = errors.New("request head incomplete")

// parsePlain parses the request head at the start of buf. It returns
// errMore while the head may still be plain but is not complete, and
// errNotPlain for anything but a GET or HEAD in absolute http:// form,
// HTTP/1.1, CRLF line ends, valid fields, exactly one valid Host, and no
// Content-Length, Transfer-Encoding, Expect or Upgrade. Whatever is not
// plain, malformed heads included, is the HTTP server's to answer.
func parsePlain(buf []byte) (*http.Request, int, error) {
	n, lines, err := headLen(buf)
	if err != nil {
		return nil, 0, err
	}
	// One string for the head: every string of the request points into it.
	head := string(buf[:n])
	line, rest, _ := strings.Cut(head, "\r\n")
	method, line, _ := strings.Cut(line, " ")
	target, proto, _ := strings.Cut(line, " ")
	if proto != "HTTP/1.1" || !strings.HasPrefix(target, "http://") {
		return nil, 0, errNotPlain
	}
	switch method {
	case http.MethodGet, http.MethodHead:
	default:
		return nil, 0, errNotPlain
	}
	h := make(http.Header, lines)
	values := make([]string, lines)
	for i := 0; ; i++ {
		line, rest, _ = strings.Cut(rest, "\r\n")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || !httpguts.ValidHeaderFieldName(k) {
			return nil, 0, errNotPlain
		}
		v = strings.Trim(v, " \t")
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, 0, errNotPlain
		}
		key := textproto.CanonicalMIMEHeaderKey(k)
		switch key {
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade":
			return nil, 0, errNotPlain
		}
		if vs, ok := h[key]; ok {
			h[key] = append(vs, v)
		} else {
			values[i] = v
			h[key] = values[i : i+1 : i+1]
		}
	}
	hosts := h["Host"]
	if len(hosts) != 1 || !httpguts.ValidHostHeader(hosts[0]) {
		return nil, 0, errNotPlain
	}
	delete(h, "Host")
	u, err := url.ParseRequestURI(target)
	if err != nil || u.Host == "" {
		return nil, 0, errNotPlain
	}
	req := &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       u.Host,
		RequestURI: target,
		Close:      httpguts.HeaderValuesContainsToken(h["Connection"], "close"),
	}
	return req, n, nil
}

// headLen returns the length of the request head at the start of buf and
// its number of header lines: errMore if it has no end yet, errNotPlain for
// a bare LF or an obsolete folded line.
func headLen(buf []byte) (n, lines int, err error) {
	for i := 0; ; lines++ {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0, 0, errMore
		}
		if j == 0 || buf[i+j-1] != '\r' {
			return 0, 0, errNotPlain
		}
		if i > 0 && (buf[i] == ' ' || buf[i] == '\t') {
			return 0, 0, errNotPlain
		}
		if j == 1 && i > 0 {
			return i + 2, lines - 1, nil // the request line is not a header line
		}
		i += j + 1
	}
}
