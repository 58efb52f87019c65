// Package handoff passes on a connection whose first bytes were already
// read: the gateway and the exit read the start of every connection
// themselves (a CONNECT head is served on the raw connection) and hand the
// others, with what they read, to an HTTP server.
package handoff

import (
	"bufio"
	"net"
	"sync"
)

// Conn is a net.Conn whose reads return what R buffered first, then read
// the connection directly.
type Conn struct {
	net.Conn
	R *bufio.Reader
}

func (c *Conn) Read(p []byte) (int, error) {
	if c.R.Buffered() > 0 {
		return c.R.Read(p)
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
