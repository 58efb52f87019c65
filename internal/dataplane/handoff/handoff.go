// Package handoff passes on a connection whose first bytes were already
// read: the exit reads the start of every connection itself (a CONNECT
// head is served on the raw connection) and hands the others, with what it
// read, to an HTTP server; the gateway hands a customer's TLS handshake to
// crypto/tls the same way.
package handoff

import (
	"bufio"
	"net"
	"sync"
)

// Conn is a net.Conn whose reads return Early first, then read the
// connection directly.
type Conn struct {
	net.Conn
	Early []byte
}

// Take returns c with what br buffered of it, copied: br can go back to
// its pool, and an idle connection holds only the bytes, not a reader.
func Take(c net.Conn, br *bufio.Reader) *Conn {
	b, _ := br.Peek(br.Buffered())
	return &Conn{Conn: c, Early: append([]byte(nil), b...)}
}

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.Early) > 0 {
		n := copy(p, c.Early)
		c.Early = c.Early[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Listener is a net.Listener fed by Push: a server's Accept returns the
// connections its owner pushes.
type Listener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func NewListener() *Listener {
	return &Listener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// Push hands c to the next Accept; false if the listener is closed (the
// caller still owns c then).
func (l *Listener) Push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Push fail from now on. It is idempotent.
func (l *Listener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *Listener) Addr() net.Addr { return &net.TCPAddr{} }
