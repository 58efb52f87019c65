package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// exitClient forwards bodiless absolute-form requests to one HTTP proxy (a
// third-party HTTP upstream, or a farmgate exit for https:// URLs; http://
// ones go to the origin through a tunnel, see originClient) over keep-alive
// connections it pools, in the caller's goroutine: net/http's Transport
// hands every request to two goroutines of its own, and those hand-offs
// were a good part of the gateway's cost per request. It writes a request
// whole before it reads the answer, so requests with a body go through the
// Transport, which reads an early answer while it still sends.
type exitClient struct {
	addr    string // the proxy's host:port
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout time.Duration // for the response head
	idle    idlePool[*exitConn]
}

func newExitClient(addr string, dial func(ctx context.Context, network, addr string) (net.Conn, error), timeout time.Duration, maxIdle int) *exitClient {
	return &exitClient{addr: addr, dial: dial, timeout: timeout, idle: idlePool[*exitConn]{max: maxIdle}}
}

type exitConn struct {
	net.Conn
	br *bufio.Reader
	bw *bufio.Writer
	// home takes the connection back after an answer read to the end, or
	// closes it; for an origin connection it also knows its key.
	home connHome
}

// connHome is where a connection goes once its answer was read to the
// end: put keeps it for the next request, done lets go of one that cannot
// carry another.
type connHome interface {
	put(*exitConn)
	done(*exitConn)
}

func newExitConn(c net.Conn, home connHome) *exitConn {
	return &exitConn{Conn: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096), home: home}
}

func (c *exitClient) put(ec *exitConn) { c.idle.put(ec) }

func (c *exitClient) done(ec *exitConn) { ec.Close() }

func (c *exitClient) get(ctx context.Context) (*exitConn, bool, error) {
	if ec, ok := c.idle.get(); ok {
		return ec, true, nil
	}
	conn, err := c.dial(ctx, "tcp", c.addr)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrExitDial, err)
	}
	return newExitConn(conn, c), false, nil
}

// RoundTrip sends req, which has no body, through the proxy and returns its
// response; the response body must be read to the end or closed. A pooled
// connection the proxy closed meanwhile is replaced once.
func (c *exitClient) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		ec, reused, err := c.get(ctx)
		if err != nil {
			return nil, err
		}
		resp, err := exchange(ctx, ec, req, req.WriteProxy, c.timeout)
		if err == nil {
			return resp, nil
		}
		ec.Close()
		if reused && attempt == 0 && ctx.Err() == nil && retryable(req, err) {
			continue // a stale keep-alive connection: try a fresh one
		}
		return nil, err
	}
}

// errNoAnswer marks an exchange whose connection ended before a byte of
// the answer arrived: on a reused connection, most likely closed by its
// peer while idle.
var errNoAnswer = errors.New("connection closed before an answer")

// retryable reports whether req may be sent again on a fresh connection
// after err on a reused one. As net/http's Transport does: only when the
// peer closed before answering, and only a request that can be replayed,
// since the peer may have acted on it before it closed.
func retryable(req *http.Request, err error) bool {
	return errors.Is(err, errNoAnswer) && isReplayable(req)
}

// isReplayable reports whether req may be sent twice: an idempotent
// method, or a request that says so with an idempotency key.
func isReplayable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return req.Header.Get("Idempotency-Key") != "" || req.Header.Get("X-Idempotency-Key") != ""
}

// exchange writes req on ec with write (unless write is nil: the request
// went out already) and reads the answer's head, waiting up to timeout. A
// request with a body is written by a goroutine of the exchange while the
// answer is read, as net/http's Transport does: an answer that comes early
// (a 413 to a large upload, an echo that streams back) is not held up
// behind the body.
func exchange(ctx context.Context, ec *exitConn, req *http.Request, write func(io.Writer) error, timeout time.Duration) (*http.Response, error) {
	// Only the wait for the answer's head is bounded here. A customer who
	// leaves (or idles past IdleTimeout) cancels ctx, which unblocks every
	// read of the exchange, the answer's body included: the watch ends
	// with the body.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		ec.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	var w io.Writer = ec.Conn
	if ec.bw != nil {
		w = ec.bw
	}
	send := func() error {
		err := write(w)
		if err == nil && ec.bw != nil {
			err = ec.bw.Flush()
		}
		return err
	}
	// Before the body's writer starts: a failing body sets its own,
	// earlier, deadline.
	ec.SetReadDeadline(time.Now().Add(timeout))
	var sending chan error // the body's writer; nil when the request went out whole
	var body *bodyReader
	switch {
	case write == nil:
	case req.Body != nil && req.Body != http.NoBody:
		if ec.bw == nil {
			ec.bw = bufio.NewWriterSize(ec.Conn, 4096)
			w = ec.bw
		}
		body = &bodyReader{ReadCloser: req.Body}
		req.Body = body
		sending = make(chan error, 1)
		go func() {
			// Owned by the exchange: it ends with the body, or when the
			// connection closes (the answer's end, or a failure).
			err := send()
			if be := body.failed.Load(); be != nil {
				// The customer's body failed: no answer is coming that
				// anyone wants; unblock the read of its head.
				err = be
				ec.SetReadDeadline(time.Unix(1, 0))
			}
			sending <- err
		}()
	default:
		if err := send(); err != nil {
			stop()
			return nil, fmt.Errorf("send request: %w", err)
		}
	}
	fail := func(err error) (*http.Response, error) {
		stop()
		if sending != nil {
			// Closing ends the body's writer at its next write; one
			// waiting for the customer's next bytes ends when the
			// gateway closes their connection.
			ec.Close()
			if be := body.failed.Load(); be != nil {
				return nil, fmt.Errorf("send request: %w", be)
			}
		}
		return nil, err
	}
	if ec.br == nil {
		ec.br = readers.Get().(*bufio.Reader)
		ec.br.Reset(ec.Conn)
	}
	if _, err := ec.br.Peek(1); err != nil {
		if !isTimeout(err) {
			err = fmt.Errorf("%w: %w", errNoAnswer, err)
		}
		return fail(fmt.Errorf("read response: %w", err))
	}
	for {
		resp, err := http.ReadResponse(ec.br, req)
		if err != nil {
			return fail(fmt.Errorf("read response: %w", err))
		}
		// 1xx interim answers (100 Continue) are not the response.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.StatusCode == http.StatusSwitchingProtocols {
				return fail(errors.New("read response: 101 to a request that asked no upgrade"))
			}
			continue
		}
		ec.SetReadDeadline(time.Time{})
		reusable := !resp.Close && !req.Close
		resp.Body = &pooledBody{ReadCloser: resp.Body, ec: ec, reusable: reusable, stop: stop, fired: fired, sending: sending}
		return resp, nil
	}
}

// bodyError is an error of the request body's Read, as the body's writer
// met it: the customer's, not the exit's or the origin's.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// bodyReader keeps the first error of a request body's reads, so the
// exchange can tell it from the connection's: Request.Write wraps it in a
// type errors.As cannot see through.
type bodyReader struct {
	io.ReadCloser
	failed atomic.Pointer[bodyError] // the first error, read by the exchange
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.failed.CompareAndSwap(nil, &bodyError{err})
	}
	return n, err
}

// pooledBody gives its connection back to the pool once the body was read
// to the end, and closes it otherwise.
type pooledBody struct {
	io.ReadCloser
	ec       *exitConn
	reusable bool
	done     bool
	stop     func() bool   // ends the watch on the request's context
	fired    chan struct{} // closed once the watch has set its deadline
	sending  chan error    // the request body's writer, if one runs
}

func (b *pooledBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

func (b *pooledBody) finish(atEOF bool) {
	b.done = true
	if !b.stop() {
		// The context ended (the customer left, perhaps with the whole
		// answer: a HEAD's, a 204's) and its watch has set a deadline on
		// the connection. At the answer's end the connection is still
		// good once the deadline is cleared.
		<-b.fired
		if atEOF {
			b.ec.SetDeadline(time.Time{})
		}
	}
	if b.sending != nil {
		// The answer ended: the connection is reused only if the
		// request's body went out whole too.
		select {
		case err := <-b.sending:
			b.reusable = b.reusable && err == nil
		default:
			atEOF = false
		}
	}
	if !atEOF {
		// Closing a body read with http.ReadResponse reads the rest of
		// it first, to keep the connection usable: a customer who left a
		// download would have the gateway fetch all of it from the exit.
		// The connection goes first, so that read ends at once.
		b.ec.Close()
		b.ReadCloser.Close()
		return
	}
	b.ReadCloser.Close()
	if b.reusable {
		b.ec.home.put(b.ec)
		return
	}
	b.ec.home.done(b.ec)
}
