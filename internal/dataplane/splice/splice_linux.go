//go:build linux

// Package splice copies between TCP connections in the kernel, like
// io.Copy does between two *net.TCPConn on Linux, but it takes a pipe only
// while bytes are in flight. io.Copy holds its pipe (two descriptors and a
// 1 MiB ring) for the whole copy, so every idle tunnel direction of a relay
// kept one: six descriptors per idle tunnel instead of two.
package splice

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// pipeSize is each pipe's capacity, as Go's own splice sets it: one splice
// call moves up to that much.
const pipeSize = 1 << 20

type pipe struct {
	r, w int
	fds  *pipeFDs // what the cleanup closes, unless closed already
}

type pipeFDs struct {
	r, w   int
	closed bool
}

// discard closes a pipe that may hold bytes, instead of pooling it.
func (p *pipe) discard() {
	p.fds.closed = true
	unix.Close(p.r)
	unix.Close(p.w)
}

var pipes = sync.Pool{New: func() any {
	p, err := newPipe()
	if err != nil {
		return err
	}
	return p
}}

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	// A smaller pipe still works, only with more calls per megabyte.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	p := &pipe{r: fds[0], w: fds[1], fds: &pipeFDs{r: fds[0], w: fds[1]}}
	// A pipe the pool drops is closed when collected.
	runtime.AddCleanup(p, func(f *pipeFDs) {
		if !f.closed {
			unix.Close(f.r)
			unix.Close(f.w)
		}
	}, p.fds)
	return p, nil
}

func getPipe() (*pipe, error) {
	switch v := pipes.Get().(type) {
	case *pipe:
		return v, nil
	case error:
		return nil, v
	}
	return nil, errors.New("splice: bad pipe pool entry")
}

// Copy copies from src to dst until src's EOF (then it returns nil, like
// io.Copy) or an error, and returns the bytes written. Closing either
// connection, or a deadline on it, ends it. Between two *net.TCPConn it
// splices; otherwise it is io.Copy.
func Copy(dst, src net.Conn) (int64, error) {
	d, ok1 := dst.(*net.TCPConn)
	s, ok2 := src.(*net.TCPConn)
	if !ok1 || !ok2 {
		return io.Copy(dst, src)
	}
	return spliceTCP(d, s)
}

func spliceTCP(dst, src *net.TCPConn) (int64, error) {
	rs, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	ws, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var written int64
	for {
		// Wait for bytes without a pipe; take one to move them.
		var p *pipe
		var n int64
		var serr error
		rerr := rs.Read(func(fd uintptr) bool {
			if p == nil {
				if p, serr = getPipe(); serr != nil {
					return true
				}
			}
			for {
				n, serr = unix.Splice(int(fd), nil, p.w, nil, pipeSize, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				if serr != unix.EINTR {
					break
				}
			}
			if serr == unix.EAGAIN {
				pipes.Put(p) // empty: back to the pool while we wait
				p = nil
				return false
			}
			return true
		})
		if err := firstErr(rerr, serr, "splice from"); err != nil || n == 0 {
			if p != nil {
				pipes.Put(p) // nothing in it
			}
			return written, err // n == 0 without error: EOF
		}
		left := n
		werr := ws.Write(func(fd uintptr) bool {
			for left > 0 {
				m, e := unix.Splice(p.r, nil, int(fd), nil, int(left), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				switch e {
				case nil:
					left -= m
					written += m
				case unix.EINTR:
				case unix.EAGAIN:
					return false
				default:
					serr = e
					return true
				}
			}
			return true
		})
		if err := firstErr(werr, serr, "splice to"); err != nil {
			p.discard() // bytes may be left in it
			return written, err
		}
		pipes.Put(p)
	}
}

func firstErr(connErr, spliceErr error, what string) error {
	if connErr != nil {
		return connErr
	}
	if spliceErr != nil {
		return os.NewSyscallError(fmt.Sprintf("%s socket", what), spliceErr)
	}
	return nil
}
