package gateway

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/farmgate/farmgate/internal/dataplane/handoff"
	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// servedConn is a customer connection handed to net/http's server.
//
// That server answers a request it cannot read (400 for a malformed head,
// 431 for one over its limit, 501 for an unknown transfer encoding) on its
// own, before any handler runs, in one write of a fixed shape; servedConn
// adds the X-Farmgate-Error that every other refusal carries.
//
// It also counts the bytes read from and written to the customer, which
// is what a request served through an exit is billed (usage.go): the
// server's ConnState hook pays each request once its answer is all out
// (StateIdle, StateClosed) with the bytes since the one before ended.
type servedConn struct {
	*handoff.Conn
	in, out atomic.Int64 // bytes read from and written to the customer

	mu       sync.Mutex // guards the fields below
	mark     [2]int64   // in and out when the last request ended
	settle   func(up, down int64)
	hijacked bool // the connection left the server (an upgrade, or CONNECT)
}

func newServedConn(c *handoff.Conn) *servedConn { return &servedConn{Conn: c} }

func (c *servedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

// cannedHeader is the header of net/http's own refusals, right after the
// status line. An answer through our handler cannot look like it: it
// carries an X-Farmgate-* header, and the handler's headers are written
// before the server's own Connection and Date.
const cannedHeader = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *servedConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return c.write(p)
	}
	i := bytes.IndexByte(p, '\r')
	if i < 0 || !bytes.HasPrefix(p[i:], []byte(cannedHeader)) {
		return c.write(p)
	}
	end := i + len(cannedHeader) - 2 // the blank line
	out := make([]byte, 0, len(p)+48)
	out = append(out, p[:end]...)
	out = append(out, wire.HeaderError+": bad_request\r\n"...)
	out = append(out, p[end:]...)
	if _, err := c.write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *servedConn) write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// owe takes the settlement of the request being served; once the
// connection left the server (a websocket's 101), the answer's body ends
// with the exchange, and the request is paid at once.
func (c *servedConn) owe(settle func(up, down int64)) {
	c.mu.Lock()
	c.settle = settle
	hijacked := c.hijacked
	c.mu.Unlock()
	if hijacked {
		c.pay()
	}
}

// pay settles the request that just ended, if one was served through an
// exit, with the bytes the connection moved since the one before ended.
func (c *servedConn) pay() {
	in, out := c.in.Load(), c.out.Load()
	c.mu.Lock()
	settle := c.settle
	c.settle = nil
	up, down := in-c.mark[0], out-c.mark[1]
	c.mark = [2]int64{in, out}
	c.mu.Unlock()
	if settle != nil {
		settle(up, down)
	}
}

// hijack notes that the connection left the server, and returns the bytes
// read from it since the last request ended: for a CONNECT, its head and
// what net/http read past it.
func (c *servedConn) hijack() (in int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hijacked = true
	return c.in.Load() - c.mark[0]
}

// connState is the server's ConnState hook: it pays each request once
// its answer is out.
func connState(c net.Conn, s http.ConnState) {
	sc, ok := c.(*servedConn)
	if !ok {
		return
	}
	switch s {
	case http.StateIdle, http.StateClosed:
		sc.pay()
	case http.StateHijacked:
		sc.hijack()
	}
}

// servedContext is the server's ConnContext hook: forward finds the
// connection's biller in the request's context.
func servedContext(ctx context.Context, c net.Conn) context.Context {
	if sc, ok := c.(*servedConn); ok {
		return withBiller(ctx, sc)
	}
	return ctx
}

// CloseWrite lets net/http's server half-close after a refusal and give the
// customer time to read it before the close (which, with the rest of their
// request unread, resets the connection).
func (c *servedConn) CloseWrite() error {
	if cw, ok := c.Conn.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// unserved returns the connection under a servedConn: a tunnel taken over
// from net/http's server relays bytes that are not the server's.
func unserved(c net.Conn) net.Conn {
	if s, ok := c.(*servedConn); ok {
		return s.Conn
	}
	return c
}
