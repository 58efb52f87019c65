// Package rawio reads and writes TCP sockets with system calls that the Go
// runtime does not account as system calls.
//
// A socket's read or write never blocks (the net package's descriptors are
// non-blocking), yet net.Conn's Read and Write enter the runtime's syscall
// state. A process whose processors were all idle then wakes its sysmon
// thread, which polls every 20 µs until the process is idle again, and
// hands a processor to another thread when a call on loopback outlasts one
// of its polls. A gateway or an exit that wakes for every request pays for
// that each time: sysmon alone was 7% of a gateway's CPU, 11–14% of an
// exit's, in profiles of the requests phase (docs/performance.md). Here
// the call is made the way the runtime makes its own non-blocking calls;
// waiting for the socket still goes through the runtime's poller, so
// deadlines and Close work as with net.Conn.
//
// Only a *net.TCPConn is read and written this way: any other net.Conn's
// own methods are called, since a wrapper may do more than move bytes.
// Race-detector builds make ordinary system calls, which tell the detector
// that bytes written to a socket happen before they are read.
package rawio

import (
	"io"
	"net"
	"syscall"
)

// maxIov bounds the buffers one writev takes; the rest go in the next.
const maxIov = 16

// Read reads from c as c.Read would: n > 0, or 0 and an error (io.EOF at
// the peer's end of the stream).
func Read(c net.Conn, p []byte) (int, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok || !enabled {
		return c.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, rerr = ReadFD(fd, p)
		return rerr != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, opError(c, "read", rerr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p to c as c.Write would.
func Write(c net.Conn, p []byte) (int, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok || !enabled {
		return c.Write(p)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := write(fd, p[n:])
			if err == syscall.EAGAIN {
				return false
			}
			if err != nil {
				werr = err
				return true
			}
			n += m
		}
		return true
	})
	if err == nil && werr != nil {
		err = opError(c, "write", werr)
	}
	return n, err
}

// Writev writes all of bufs to c, in as few writev calls as it takes, as
// net.Buffers' WriteTo does. It consumes bufs as WriteTo does.
func Writev(c net.Conn, bufs *net.Buffers) (int64, error) {
	tc, ok := c.(*net.TCPConn)
	if ok && !enabled {
		return bufs.WriteTo(tc)
	}
	if !ok {
		// One Write per buffer, not net.Buffers' WriteTo: through an
		// interface, WriteTo would move every caller's buffer list to the
		// heap.
		var n int64
		for len(*bufs) > 0 {
			m, err := c.Write((*bufs)[0])
			n += int64(m)
			if err != nil {
				consume(bufs, m)
				return n, err
			}
			*bufs = (*bufs)[1:]
		}
		return n, nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int64
	var werr error
	err = rc.Write(func(fd uintptr) bool {
		for {
			for len(*bufs) > 0 && len((*bufs)[0]) == 0 {
				*bufs = (*bufs)[1:]
			}
			if len(*bufs) == 0 {
				return true
			}
			m, err := writev(fd, *bufs)
			if err == syscall.EAGAIN {
				return false
			}
			if err != nil {
				werr = err
				return true
			}
			n += int64(m)
			consume(bufs, m)
		}
	})
	if err == nil && werr != nil {
		err = opError(c, "writev", werr)
	}
	return n, err
}

// consume drops the first m bytes of bufs.
func consume(bufs *net.Buffers, m int) {
	for m > 0 && len(*bufs) > 0 {
		b := (*bufs)[0]
		if m < len(b) {
			(*bufs)[0] = b[m:]
			return
		}
		m -= len(b)
		*bufs = (*bufs)[1:]
	}
}

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
		return 0, opError(c, "read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// WaitReadable waits until c has bytes to read, or its EOF or an error,
// without reading and without a buffer: an idle connection costs its
// goroutine and nothing more. Deadlines on c apply. For a conn that is
// not a syscall.Conn it returns at once: the caller's read will wait.
func WaitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
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

// ReadFD is one read of fd into p, for a caller inside a syscall.RawConn's
// Read: n and nil, or 0 and the error (syscall.EAGAIN when nothing is
// there yet; EINTR is retried).
func ReadFD(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return read(fd, p)
}

func opError(c net.Conn, op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// Reader reads C with Read: the source for a bufio.Reader.
type Reader struct{ C net.Conn }

func (r Reader) Read(p []byte) (int, error) { return Read(r.C, p) }
