// The HTTP path: absolute-form requests, one after another on a kept-alive
// connection, read and answered on the customer's connection itself, as
// CONNECT and SOCKS5 are. Requests are parsed by net/http's ReadRequest;
// answers are written here, streamed as they arrive. A CONNECT on a
// kept-alive connection takes it over (connect.go).

package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// serveRequests serves requests on c while they come; with buffered, br
// holds what was read of the first, else the first is waited for as on a
// kept-alive connection. It reports whether a CONNECT's relay took c over;
// if not, the caller closes c.
func (g *Gateway) serveRequests(c net.Conn, br *bufio.Reader, in *counter, buffered bool) (handedOff bool) {
	// Requests of one connection share a context: it ends with the
	// connection, when Shutdown's deadline cuts everything, or when the
	// customer moved no byte for IdleTimeout. Nothing reads the connection
	// while a request is out, so a read deadline could not notice that; the
	// timer cancels the request, and the deadline it sets unblocks a write.
	ctx, cancel := context.WithCancel(g.ctx)
	defer cancel()
	owed := &bill{}
	ctx = withBill(ctx, owed)
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
	for first := buffered; ; first = false {
		if !first && br.Buffered() == 0 && !g.waitRequest(c, br, &guard) {
			return false
		}
		leave.reset()
		// What the customer sent from here on is this request's.
		mark := in.n.Load() - int64(br.Buffered())
		c.SetReadDeadline(time.Now().Add(g.cfg.ReadHeaderTimeout))
		if head, err := br.Peek(8); err == nil && string(head) == "CONNECT " {
			// A CONNECT, first or after other requests: the relay takes
			// the connection over, unless it was refused for want of
			// credentials (the next request may carry them).
			timer.Stop()
			handedOff, keep := g.readConnect(c, br)
			if !keep {
				return handedOff
			}
			guard.reset()
			continue
		}
		in.limit = in.n.Load() + maxHead
		req, err := http.ReadRequest(br)
		in.limit = 0
		if err != nil {
			if br.Buffered() > 0 || !isQuietEnd(err) {
				// A head that does not parse: nothing after it can be
				// trusted to start a request.
				r := refuse("bad_request")
				r.detail = "malformed request head"
				if errors.Is(err, errHeadTooLarge) {
					r.status, r.detail = http.StatusRequestHeaderFieldsTooLarge, "request head over 1 MB"
				}
				g.metrics.refused(r, "")
				r.write(c, true)
			}
			g.putBuf(br)
			return false
		}
		c.SetReadDeadline(time.Time{})
		guard.touch()
		req = req.WithContext(ctx)
		req.RemoteAddr = remote
		hasBody := req.Body != nil && req.Body != http.NoBody
		var cont *continuer
		// Once the body is in, nothing reads the connection until the
		// answer is out: the watch notices a customer who leaves.
		body := &eofBody{ReadCloser: req.Body, atEOF: leave.arm}
		if hasBody {
			req.Body = guardedBody{ReadCloser: body, guard: &guard}
			cont = g.expectContinue(c, req)
		} else {
			leave.arm()
		}
		resp := g.serveHTTP(req)
		cont.answered()
		keep, written := g.writeResponse(c, req, resp, &guard)
		leave.stop()
		unread := hasBody && !body.eof.Load()
		if unread {
			// The answer came before the whole request (an early 413, a
			// refusal): what is left of it cannot be told from the next.
			keep = false
		}
		owed.pay(in.n.Load()-int64(br.Buffered())-mark, written+cont.sent())
		if !keep || g.isClosing() {
			if unread {
				lingerClose(c)
			}
			g.putBuf(br)
			return false
		}
	}
}

// maxHead bounds a request head: net/http's server allows 1 MB.
const maxHead = 1 << 20

// isQuietEnd reports whether err ends a connection between requests
// without a word worth answering: the customer closed, or fell silent.
func isQuietEnd(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isTimeout(err) || errors.Is(err, syscall.ECONNRESET)
}

// eofBody notes that a request body was read to its end.
type eofBody struct {
	io.ReadCloser
	eof   atomic.Bool // read by the client's writer goroutine
	atEOF func()      // called once, at the end
}

func (b *eofBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.eof.Swap(true) {
		b.atEOF()
	}
	return n, err
}

// counter counts the bytes read from a customer's connection (what the
// request is billed up), and bounds a request head while one is read.
type counter struct {
	r     io.Reader
	n     atomic.Int64 // bytes read; body reads run on the client's goroutine
	limit int64        // n may not pass it while a head is read; 0: no bound
}

var errHeadTooLarge = errors.New("request head too large")

func (c *counter) Read(p []byte) (int, error) {
	if c.limit > 0 {
		left := c.limit - c.n.Load()
		if left <= 0 {
			return 0, errHeadTooLarge
		}
		p = p[:min(int64(len(p)), left)]
	}
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// readConnect reads a CONNECT head from br and sets up its tunnel. It
// reports whether the relay took c over, and if not, whether c and br stay
// for the customer's next request (a 407, unless the gateway is closing).
func (g *Gateway) readConnect(c net.Conn, br *bufio.Reader) (handedOff, keep bool) {
	target, proxyAuth, n, err := readConnectHead(br)
	if err != nil {
		r := replyFor(err)
		g.metrics.refused(r, "")
		r.write(c, true)
		g.putBuf(br)
		return false, false
	}
	c.SetReadDeadline(time.Time{})
	ans := &httpAnswer{}
	if g.serveConnect(c, br, ans, target, proxyAuth, int64(n)) {
		return true, false
	}
	if ans.kept && g.isClosing() {
		g.putBuf(br)
		return false, false
	}
	return false, ans.kept
}

// lingerClose half-closes c and gives the customer a moment to read the
// answer before the close, which, with part of their request unread, would
// reset the connection and could lose the answer (as net/http's server
// does).
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		io.Copy(io.Discard, io.LimitReader(c, 256<<10))
	}
}

// continuer answers a customer's Expect: 100-continue when the request's
// body is first read (the customer was admitted and the request is on its
// way), unless the answer came first.
type continuer struct {
	c    net.Conn
	mu   sync.Mutex // guards the fields below
	done bool       // 100 sent, or the answer is being written
	n    int64      // bytes of the 100 sent
}

// expectContinue takes req's Expect: 100-continue over: the gateway says
// 100 Continue itself, when the body is first read. nil when not asked.
func (g *Gateway) expectContinue(c net.Conn, req *http.Request) *continuer {
	if !strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
		return nil
	}
	req.Header.Del("Expect")
	cont := &continuer{c: c}
	req.Body = continueBody{ReadCloser: req.Body, cont: cont}
	return cont
}

// answered says the answer is about to be written: no 100 after it.
func (k *continuer) answered() {
	if k == nil {
		return
	}
	k.mu.Lock()
	k.done = true
	k.mu.Unlock()
}

// sent returns the bytes of the 100 Continue written.
func (k *continuer) sent() int64 {
	if k == nil {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n
}

var continueLine = []byte("HTTP/1.1 100 Continue\r\n\r\n")

type continueBody struct {
	io.ReadCloser
	cont *continuer
}

func (b continueBody) Read(p []byte) (int, error) {
	k := b.cont
	k.mu.Lock()
	if !k.done {
		k.done = true
		n, _ := k.c.Write(continueLine)
		k.n = int64(n)
	}
	k.mu.Unlock()
	return b.ReadCloser.Read(p)
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
	done    chan struct{} // a started watch ended
	aborted atomic.Bool   // stop ended the watch: not the customer leaving

	mu    sync.Mutex // guards armed and off: a request body's end arms it from the body's reader
	armed bool       // since arm, until stop
	off   bool       // stopped for this request: arm does nothing until reset
}

func newLeaveWatch(c net.Conn, br *bufio.Reader, cancel context.CancelFunc) *leaveWatch {
	w := &leaveWatch{c: c, br: br, cancel: cancel, done: make(chan struct{}, 1)}
	w.timer = time.AfterFunc(time.Hour, w.watch)
	w.timer.Stop()
	return w
}

// arm starts watching leaveWatchAfter from now, unless bytes of the next
// request are already buffered (the customer is still there, and the
// buffer is not the watch's to fill). Nothing else may read br until stop.
func (w *leaveWatch) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.off && !w.armed && w.br.Buffered() == 0 {
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

// stop ends the watch, and keeps it from starting again until reset; the
// connection is the caller's again.
func (w *leaveWatch) stop() {
	w.mu.Lock()
	armed := w.armed
	w.armed, w.off = false, true
	w.mu.Unlock()
	if !armed || w.timer.Stop() {
		return // it had not started
	}
	w.aborted.Store(true)
	w.c.SetReadDeadline(time.Unix(1, 0))
	<-w.done
	w.c.SetReadDeadline(time.Time{})
	w.aborted.Store(false)
}

// reset lets arm start a watch again, for the next request.
func (w *leaveWatch) reset() {
	w.mu.Lock()
	w.off = false
	w.mu.Unlock()
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
	sock := socketOf(c) // Shutdown closes the socket: a TLS close could wait on a write
	g.idle[sock] = struct{}{}
	g.mu.Unlock()
	guard.reset()
	_, err := br.Peek(1)
	g.mu.Lock()
	_, still := g.idle[sock] // not there: Shutdown closed it
	delete(g.idle, sock)
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

// writeResponse writes resp to the customer, streaming its body as it comes,
// and closes the body. It reports whether the connection can carry the
// next request, and how many bytes it wrote.
func (g *Gateway) writeResponse(c net.Conn, req *http.Request, resp *http.Response, guard *idleGuard) (keep bool, written int64) {
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
		case req.ProtoAtLeast(1, 1):
			chunked = true
		default:
			// An HTTP/1.0 customer knows no chunks: the body ends
			// with the connection.
			req.Close = true
		}
	}
	// A gateway that is shutting down says so, as net/http's server does:
	// the customer sends the next request on a new connection.
	keep = !req.Close && !g.isClosing()
	head := appendHead(bufs.head[:0], resp, chunked, !keep)
	bufs.head = head
	if !withBody {
		guard.touch()
		n, err := c.Write(head)
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
			n, err := out.WriteTo(c)
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

// plainBuf holds what writeResponse needs per response.
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
