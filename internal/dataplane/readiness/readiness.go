// Package readiness looks at a socket without waiting and waits on one
// without a buffer: what a kept connection needs before it is reused (has
// the peer closed it, or sent something it should not have?) and what an
// idle connection needs so that it holds no buffer while it waits (Wait,
// or ReadFD inside the conn's own RawConn.Read).
//
// Both work on the descriptor through syscall.RawConn, so deadlines and
// Close apply as with net.Conn's own methods. Outside Unix there is no
// non-blocking peek: Peek reports nothing there, and the caller finds out
// at its next read.
package readiness

import (
	"io"
	"net"
	"syscall"
)

// Peek reads what c has, up to len(p), without waiting: with keep set the
// bytes stay for the next read (MSG_PEEK). It returns n bytes; 0 and nil
// when nothing is there; 0 and io.EOF when the peer closed.
func Peek(c *net.TCPConn, p []byte, keep bool) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, rerr = recvNow(fd, p, keep)
		return true
	}); err != nil {
		return 0, err
	}
	switch {
	case rerr == syscall.EAGAIN:
		return 0, nil
	case rerr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Wait waits until c has bytes to read, or its EOF or an error, without
// reading and without a buffer: an idle connection costs its goroutine and
// nothing more. Deadlines on c apply. For a conn that is not a
// syscall.Conn, or outside Unix, it returns at once: the caller's read
// waits instead.
func Wait(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok || !supported {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, err := recvNow(fd, b[:], true)
		return err != syscall.EAGAIN
	})
}

// ReadFD is one read of fd into p, for a caller inside a
// syscall.RawConn's Read that takes its buffer only once the socket has
// bytes: n and nil, or 0 and the error (syscall.EAGAIN when nothing is
// there yet; EINTR is retried). Only where Supported.
func ReadFD(fd uintptr, p []byte) (int, error) { return readFD(fd, p) }

// Supported says whether Peek, Wait and ReadFD work on this platform.
const Supported = supported
