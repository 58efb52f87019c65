// Package readiness looks at a socket without waiting and waits on one
// without a buffer: what a kept connection needs before it is reused (has
// the peer closed it, or sent something it should not have?) and what an
// idle connection needs so that it holds no buffer while it waits.
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

// ReadWhenReady reads c into the buffer take returns, taking it only once
// c has bytes (or its end) to give, and handing it back with give when a
// try found nothing: a connection that waits holds no buffer. n == 0
// comes with an error, io.EOF at the end; the buffer is taken then too.
// Outside Unix, and for a conn that is not a syscall.Conn, the buffer is
// taken first and c's own Read waits.
func ReadWhenReady(c net.Conn, take func() []byte, give func()) (n int, err error) {
	if sc, ok := c.(syscall.Conn); ok && supported {
		if rc, serr := sc.SyscallConn(); serr == nil {
			var buf []byte
			var rerr error
			err = rc.Read(func(fd uintptr) bool {
				buf = take()
				n, rerr = readFD(fd, buf)
				if rerr == syscall.EAGAIN {
					give()
					buf = nil
					return false
				}
				return true
			})
			if buf == nil {
				take()
			}
			switch {
			case err != nil: // closed or deadline
				return 0, err
			case rerr != nil:
				return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
			case n <= 0:
				return 0, io.EOF
			}
			return n, nil
		}
	}
	n, err = c.Read(take())
	if n > 0 {
		return n, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return 0, err
}
