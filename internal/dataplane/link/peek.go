package link

import (
	"errors"
	"io"
	"net"
	"os"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/readiness"
)

// peek reads what arrived on link c, up to len(p), without waiting: 0 and
// nil when nothing did, 0 and io.EOF when the exit closed it. On a
// plaintext link the socket is peeked, and keep leaves the bytes for the
// next read. A TLS link cannot be peeked: its bytes are records to
// decrypt. What crypto/tls holds already is read at once; when the socket
// has bytes, they are read within a short wait (the rest of a record in
// flight), and consumed whatever keep says (a caller that asks to keep
// them refuses the link when there are any).
func peek(c net.Conn, p []byte, keep bool) (int, error) {
	if tc, ok := c.(*net.TCPConn); ok {
		return readiness.Peek(tc, p, keep)
	}
	wait := time.Duration(0)
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok {
		if tc, ok := nc.NetConn().(*net.TCPConn); ok {
			var b [1]byte
			n, err := readiness.Peek(tc, b[:], true)
			if n > 0 || err != nil {
				wait = peekWait
			}
		}
	}
	// A deadline in the past reads only what crypto/tls has buffered; a
	// timeout leaves a crypto/tls connection usable.
	c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(p)
	c.SetReadDeadline(time.Time{})
	switch {
	case n > 0:
		return n, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, nil
	case err == nil:
		return 0, nil
	case errors.Is(err, io.EOF):
		return 0, io.EOF
	}
	return 0, err
}

// peekWait bounds peek's read of a TLS record whose bytes have begun to
// arrive.
const peekWait = 20 * time.Millisecond
