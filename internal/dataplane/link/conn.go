package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Conn is a tunnel on a link whose bytes its owner reads and writes itself,
// instead of relaying them with Send and Receive: a gateway speaking HTTP
// to an origin through an exit. Writes go out framed; reads return the
// tunnel bytes the exit framed (or sent raw after a switch). Read returns
// io.EOF once the exit ended its direction (the origin closed its side).
type Conn struct {
	// The link. Only net.Conn's methods are promoted: the TCP
	// connection's ReadFrom, WriteTo and CloseWrite would skip the framing.
	net.Conn
	tc net.Conn // the link again: a *net.TCPConn, or a *tls.Conn

	pending []byte // read from the link before (behind the CONNECT reply), not decoded yet
	hdr     [hdrLen]byte
	hn      int // bytes of hdr filled
	left    int // bytes of the current frame not yet returned
	raw     bool
	ended   bool  // the exit's end frame arrived
	sentEnd bool  // our end frame went out
	broken  error // a protocol error or bytes past the end frame
}

// NewConn returns the tunnel on link c (a plaintext *net.TCPConn or a
// *tls.Conn); early is what was read from c behind the exit's reply to
// CONNECT.
func NewConn(c net.Conn, early []byte) *Conn {
	return &Conn{Conn: c, tc: c, pending: early}
}

// Read returns tunnel bytes. It decodes the frames in p itself: a frame
// header costs a memmove, not a read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		switch {
		case c.broken != nil:
			return 0, c.broken
		case c.ended:
			return 0, io.EOF
		case c.raw && len(c.pending) == 0:
			return c.tc.Read(p)
		}
		var n int
		if len(c.pending) > 0 {
			n = copy(p, c.pending)
			c.pending = c.pending[n:]
		} else {
			var err error
			n, err = c.tc.Read(p)
			if n == 0 {
				if errors.Is(err, io.EOF) {
					err = fmt.Errorf("link closed inside a tunnel: %w", io.ErrUnexpectedEOF)
				}
				return 0, err
			}
		}
		if c.raw {
			return n, nil
		}
		if out := c.decode(p[:n]); out > 0 {
			return out, nil
		}
	}
}

// decode turns the link bytes in b into tunnel bytes at the front of b and
// returns how many there are.
func (c *Conn) decode(b []byte) (out int) {
	i := 0
	for i < len(b) {
		if c.left > 0 {
			k := min(c.left, len(b)-i)
			copy(b[out:], b[i:i+k])
			out += k
			i += k
			c.left -= k
			continue
		}
		k := copy(c.hdr[c.hn:], b[i:])
		c.hn += k
		i += k
		if c.hn < hdrLen {
			break
		}
		c.hn = 0
		switch w := binary.BigEndian.Uint32(c.hdr[:]); {
		case w == endWord:
			c.ended = true
			if i < len(b) {
				// The exit writes nothing on a link between its end
				// frame and the reply to our next CONNECT.
				c.broken = fmt.Errorf("%w: %d bytes past the end of a tunnel", ErrProtocol, len(b)-i)
			}
			return out
		case w == rawWord:
			c.raw = true
			k := copy(b[out:], b[i:])
			return out + k
		case w > MaxChunk:
			c.broken = fmt.Errorf("%w: frame of %d bytes", ErrProtocol, w)
			return out
		default:
			c.left = int(w)
		}
	}
	return out
}

// Write sends p framed.
func (c *Conn) Write(p []byte) (int, error) {
	if c.sentEnd {
		return 0, fmt.Errorf("write on a tunnel already ended: %w", net.ErrClosed)
	}
	if err := SendBytes(c.tc, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite ends the direction towards the exit: the exit half-closes its
// side to the origin.
func (c *Conn) CloseWrite() error {
	if c.sentEnd {
		return nil
	}
	c.sentEnd = true
	_, err := c.tc.Write(endFrame[:])
	return err
}

// Poll looks, without waiting, whether anything arrived on an idle tunnel.
// nil: nothing did, the tunnel can carry the next request (also after the
// exit switched its direction to raw). io.EOF: the exit ended its
// direction cleanly (the origin closed an idle connection); End can then
// give the link back at once. Any other error: the link is of no further
// use.
func (c *Conn) Poll() error {
	if c.broken != nil {
		return c.broken
	}
	if c.ended {
		return io.EOF
	}
	if c.left > 0 || c.hn > 0 || len(c.pending) > 0 {
		return fmt.Errorf("%w: bytes of the tunnel unread", ErrProtocol)
	}
	// After a switch to raw (a long answer) the exit's direction is plain
	// bytes up to its half-close: peek, so an idle tunnel loses nothing.
	var buf [hdrLen + 1]byte
	m, err := peek(c.tc, buf[:], c.raw)
	switch {
	case errors.Is(err, io.EOF) && c.raw:
		// The origin closed; the link cannot carry another tunnel.
		return fmt.Errorf("tunnel ended after a switch to raw: %w", net.ErrClosed)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("link closed: %w", io.ErrUnexpectedEOF)
	case err != nil:
		return err
	case m == 0:
		return nil
	case c.raw:
		return fmt.Errorf("%d bytes arrived on an idle tunnel", m)
	}
	if out := c.decode(buf[:m]); out > 0 || !c.ended {
		return fmt.Errorf("%w: %d bytes arrived on an idle tunnel", ErrProtocol, m)
	}
	if c.broken != nil {
		return c.broken
	}
	return io.EOF
}

// Ended reports whether the exit's end frame was read: End then returns
// without waiting.
func (c *Conn) Ended() bool { return c.ended }

// End ends a tunnel that sits between two messages: it sends our end frame
// (the exit half-closes the origin, which then closes too) and reads what
// is left up to the exit's end frame, by deadline at the latest. It returns
// the link, ready for the next CONNECT, or nil when the tunnel did not end
// cleanly; then the link is closed.
func (c *Conn) End(deadline time.Time) net.Conn {
	err := c.CloseWrite()
	if err == nil && !c.ended {
		c.tc.SetReadDeadline(deadline)
		var buf [512]byte
		for err == nil && !c.ended {
			_, err = c.Read(buf[:])
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil || c.raw || c.broken != nil || !c.ended {
		c.tc.Close()
		return nil
	}
	c.tc.SetDeadline(time.Time{})
	return c.tc
}
