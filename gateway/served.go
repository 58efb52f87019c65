package gateway

import (
	"bytes"
	"errors"
	"net"

	"github.com/farmgate/farmgate/internal/handoff"
)

// servedConn is a customer connection handed to net/http's server. That
// server answers a request it cannot read (400 for a malformed head, 431 for
// one over its limit, 501 for an unknown transfer encoding) on its own,
// before any handler runs, in one write of a fixed shape; servedConn adds
// the X-Farmgate-Error that every other refusal carries.
type servedConn struct{ *handoff.Conn }

// cannedHeader is the header of net/http's own refusals, right after the
// status line. An answer through our handler cannot look like it: it
// carries an X-Farmgate-* header, and the handler's headers are written
// before the server's own Connection and Date.
const cannedHeader = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c servedConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return c.Conn.Write(p)
	}
	i := bytes.IndexByte(p, '\r')
	if i < 0 || !bytes.HasPrefix(p[i:], []byte(cannedHeader)) {
		return c.Conn.Write(p)
	}
	end := i + len(cannedHeader) - 2 // the blank line
	out := make([]byte, 0, len(p)+48)
	out = append(out, p[:end]...)
	out = append(out, headerError+": bad_request\r\n"...)
	out = append(out, p[end:]...)
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite lets net/http's server half-close after a refusal and give the
// customer time to read it before the close (which, with the rest of their
// request unread, resets the connection).
func (c servedConn) CloseWrite() error {
	if cw, ok := c.Conn.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// unserved returns the connection under a servedConn: a tunnel taken over
// from net/http's server relays bytes that are not the server's.
func unserved(c net.Conn) net.Conn {
	if s, ok := c.(servedConn); ok {
		return s.Conn
	}
	return c
}
