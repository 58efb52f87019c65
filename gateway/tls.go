package gateway

// The customer port as an HTTPS proxy: customers who send their password
// in Basic auth can keep it off the network (curl --proxy https://…,
// requests with an https:// proxy URL, Chromium --proxy-server=https://…).

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/handoff"
)

// tlsHandshake is the first byte of a TLS record that starts a handshake.
const tlsHandshake = 0x16

// handshake runs the server side of TLS on c, whose first bytes br has
// read already, within ReadHeaderTimeout.
func (g *Gateway) handshake(c net.Conn, br *bufio.Reader) (*tls.Conn, error) {
	tc := tls.Server(handoff.Take(c, br), g.cfg.CustomerTLS)
	br.Reset(nil)
	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.ReadHeaderTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	// Deadlines set on the TLS connection reach the socket.
	c.SetDeadline(time.Time{})
	return tc, nil
}

// socketOf is the TCP connection under c: the customer's TLS connection is
// timed and metered on its socket (TCP_INFO).
func socketOf(c net.Conn) net.Conn {
	for {
		switch x := c.(type) {
		case *tls.Conn:
			c = x.NetConn()
		case *handoff.Conn:
			c = x.Conn
		default:
			return c
		}
	}
}
