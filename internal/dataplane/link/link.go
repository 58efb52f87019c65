// Package link carries tunnels, one at a time, over a connection between a
// gateway and a farmgate exit that outlives each of them. A tunnel through a
// fresh connection costs both sides a TCP handshake and teardown (socket,
// connect, accept, FIN exchange, TIME_WAIT) and the customer a round trip to
// the exit; on a kept link it costs neither. The gateway keeps idle links
// per exit, as an HTTP client keeps idle connections.
//
// On a link, each direction of a tunnel is a sequence of frames, each a
// 4-byte big-endian word and what it announces:
//
//	1..MaxChunk  that many bytes of the tunnel follow
//	0            end: the sender has nothing more (its half-close)
//	0xFFFFFFFF   raw: the rest of the direction follows unframed, up to the
//	             sender's TCP half-close; the link is not reused after it
//
// A sender switches to raw when one read fills its buffer: a bulk transfer
// is then spliced in the kernel like any tunnel, and short tunnels, which
// are most tunnels, keep the link. Only a plaintext link (a *net.TCPConn)
// switches: nothing splices a TLS link, whose bytes go through user space
// either way, so it stays framed and is kept after a bulk transfer too. A gateway that carries request after
// request on a tunnel (to an origin) asks the exit not to (HeaderFramed),
// so the link outlives long answers. Either side ends a tunnel it cannot
// finish cleanly by closing the link. After both directions ended with an
// end frame, the link is ready for the next CONNECT.
package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/readiness"
	"github.com/farmgate/farmgate/internal/dataplane/splice"
)

// Header is the CONNECT request header by which a gateway offers a link,
// and the 200 reply header by which an exit takes it; any other reply means
// the tunnel is a plain one and the connection ends with it.
const Header = "X-Farmgate-Link"

// Version is Header's value: the frame format above.
const Version = "1"

// HeaderFramed, with the value "1" next to a link offer, asks the exit to
// keep its direction framed to the end instead of switching to raw: for a
// tunnel that carries request after request (a gateway's tunnel to an
// origin), whose link should outlive long answers. An exit that does not
// know it may switch anyway.
const HeaderFramed = "X-Farmgate-Link-Framed"

// IdleTimeout is how long an exit keeps a link that waits for its next
// CONNECT. A gateway should stop reusing a link well before, so it rarely
// picks one the exit is closing.
const IdleTimeout = 90 * time.Second

const (
	hdrLen  = 4
	endWord = 0
	rawWord = 0xFFFFFFFF
	// MaxChunk is the largest frame; it is also the read size, so a read
	// that fills it switches the direction to raw.
	MaxChunk = 16 << 10
)

// ErrProtocol is a frame no sender writes: the link cannot be trusted.
var ErrProtocol = errors.New("link protocol error")

// bufs hold one frame with room for a raw word behind it.
var bufs = sync.Pool{New: func() any {
	b := make([]byte, hdrLen+MaxChunk+hdrLen)
	return &b
}}

// endFrame is an end frame; it is only ever read.
var endFrame [hdrLen]byte

// Send copies src to the link until src's EOF, then ends the direction:
// with an end frame, or after a switch to raw with a half-close of the
// link. It returns the tunnel bytes sent and whether it switched to raw.
// Between reads it holds no buffer, so an idle tunnel costs no memory here.
func Send(link, src net.Conn) (n int64, raw bool, err error) {
	_, plain := link.(*net.TCPConn)
	return send(link, src, plain)
}

// SendFramed is Send without the switch to raw: the link outlives a bulk
// transfer, which is copied through user space.
func SendFramed(link, src net.Conn) (int64, error) {
	n, _, err := send(link, src, false)
	return n, err
}

func send(link, src net.Conn, mayRaw bool) (n int64, raw bool, err error) {
	for {
		bp, m, rerr := readChunk(src)
		if m > 0 {
			b := *bp
			binary.BigEndian.PutUint32(b, uint32(m))
			out := b[:hdrLen+m]
			raw = mayRaw && m == MaxChunk
			if raw {
				out = binary.BigEndian.AppendUint32(out, rawWord)
			}
			_, werr := link.Write(out)
			bufs.Put(bp)
			if werr != nil {
				return n, false, werr
			}
			n += int64(m)
			if raw {
				k, err := splice.Copy(link, src)
				n += k
				if err == nil {
					err = CloseWrite(link)
				}
				return n, true, err
			}
			continue
		}
		bufs.Put(bp)
		if rerr == io.EOF {
			_, err = link.Write(endFrame[:])
			return n, false, err
		}
		return n, false, rerr
	}
}

// SendBytes sends p on the link as tunnel bytes, as Send sends what it
// reads: for bytes a gateway read behind a CONNECT head.
func SendBytes(link net.Conn, p []byte) error {
	bp := bufs.Get().(*[]byte)
	defer bufs.Put(bp)
	for len(p) > 0 {
		k := min(len(p), MaxChunk)
		b := binary.BigEndian.AppendUint32((*bp)[:0], uint32(k))
		if _, err := link.Write(append(b, p[:k]...)); err != nil {
			return err
		}
		p = p[k:]
	}
	return nil
}

// Receive writes the tunnel bytes framed on the link to dst until the
// sender ends the direction. buffered is what was read from the link
// before (behind a CONNECT head or its reply). It returns the tunnel bytes
// written, what it read from the link past the end frame (the start of
// the link's next use), and whether the sender switched to raw (then the
// direction ended with the link's EOF). It does not half-close dst.
func Receive(dst, link net.Conn, buffered []byte) (n int64, rest []byte, raw bool, err error) {
	r := receiver{dst: dst}
	p := buffered
	var bp *[]byte // the pooled buffer p is in, if any
	for {
		if len(p) > 0 {
			done, rest, err := r.take(p) // rest is a copy
			if bp != nil {
				bufs.Put(bp)
				bp = nil
			}
			if err != nil || done {
				return r.n, rest, false, err
			}
			if r.raw {
				k, err := splice.Copy(dst, link)
				return r.n + k, nil, true, err
			}
		}
		var m int
		var rerr error
		if bp, m, rerr = readChunk(link); m == 0 {
			bufs.Put(bp)
			if rerr == io.EOF {
				rerr = fmt.Errorf("link closed inside a tunnel: %w", io.ErrUnexpectedEOF)
			}
			return r.n, nil, false, rerr
		}
		p = (*bp)[hdrLen : hdrLen+m]
	}
}

// receiver decodes frames that arrive in arbitrary pieces.
type receiver struct {
	dst  net.Conn
	n    int64
	hdr  [hdrLen]byte
	hn   int // bytes of hdr filled
	left int // bytes of the current frame not yet written
	raw  bool
}

// take consumes p: done is true at the end frame, with a copy of what
// followed it in rest. After a raw word, the bytes behind it are written
// and r.raw is set.
func (r *receiver) take(p []byte) (done bool, rest []byte, err error) {
	for len(p) > 0 {
		if r.left > 0 {
			k := min(r.left, len(p))
			if _, err := r.dst.Write(p[:k]); err != nil {
				return false, nil, err
			}
			r.n += int64(k)
			r.left -= k
			p = p[k:]
			continue
		}
		c := copy(r.hdr[r.hn:], p)
		r.hn += c
		p = p[c:]
		if r.hn < hdrLen {
			return false, nil, nil
		}
		r.hn = 0
		switch w := binary.BigEndian.Uint32(r.hdr[:]); {
		case w == endWord:
			if len(p) > 0 {
				rest = append([]byte(nil), p...)
			}
			return true, rest, nil
		case w == rawWord:
			r.raw = true
			if len(p) > 0 {
				if _, err := r.dst.Write(p); err != nil {
					return false, nil, err
				}
				r.n += int64(len(p))
			}
			return false, nil, nil
		case w > MaxChunk:
			return false, nil, fmt.Errorf("%w: frame of %d bytes", ErrProtocol, w)
		default:
			r.left = int(w)
		}
	}
	return false, nil, nil
}

// readChunk reads what c has, up to MaxChunk, into a pooled buffer behind
// room for a frame header, taking the buffer only once c has bytes: a
// tunnel that waits holds none. m == 0 comes with an error (io.EOF at the
// end); the caller puts the buffer back. The wait is inline, not behind a
// helper: the goroutines of idle tunnels wait here, and a deeper stack
// made each of them grow to the next size.
func readChunk(c net.Conn) (bp *[]byte, m int, err error) {
	// Only a *net.TCPConn is read by descriptor: a wrapper's Read (TLS)
	// does more than move bytes.
	tc, ok := c.(*net.TCPConn)
	if !ok || !readiness.Supported {
		return readChunkSlow(c)
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return readChunkSlow(c)
	}
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		bp = bufs.Get().(*[]byte)
		m, rerr = readiness.ReadFD(fd, (*bp)[hdrLen:hdrLen+MaxChunk])
		if rerr == syscall.EAGAIN {
			bufs.Put(bp) // nothing read: wait without it
			bp = nil
			return false
		}
		return true
	})
	if bp == nil {
		bp = bufs.Get().(*[]byte)
	}
	switch {
	case err != nil: // closed or deadline
		return bp, 0, err
	case rerr != nil:
		return bp, 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	case m <= 0:
		return bp, 0, io.EOF
	}
	return bp, m, nil
}

func readChunkSlow(c net.Conn) (*[]byte, int, error) {
	bp := bufs.Get().(*[]byte)
	m, err := c.Read((*bp)[hdrLen : hdrLen+MaxChunk])
	if m > 0 {
		return bp, m, nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return bp, 0, err
}

// CloseWrite half-closes c, or closes it when c cannot half-close: either
// way its peer reads EOF.
func CloseWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
