package upstream

import (
	"fmt"
	"net"
	"sync/atomic"

	"github.com/farmgate/farmgate/internal/dataplane/link"

	"github.com/prometheus/client_golang/prometheus"
)

// linkPool keeps one farmgate exit's idle links (package link): tunnels
// through a kept link skip the TCP (and TLS) handshake and teardown with
// the exit. A link is a *net.TCPConn, or a *tls.Conn over one.
type linkPool struct {
	idlePool[net.Conn]

	// taken: the exit has taken a link (it is a version that knows them),
	// so bytes may follow a CONNECT framed before its reply.
	taken atomic.Bool

	// What each tunnel went over (farmgate_exit_links_total).
	kept, fresh, stale prometheus.Counter
}

func newLinkPool(max int, m *metrics) *linkPool {
	return &linkPool{
		idlePool: idlePool[net.Conn]{max: max},
		kept:     m.links.WithLabelValues("kept"),
		fresh:    m.links.WithLabelValues("new"),
		stale:    m.links.WithLabelValues("stale"),
	}
}

// LinkTunnel is a tunnel on a link (a new one or one from the pool): its
// bytes travel framed (package link), and the link can carry the next
// tunnel once both directions ended with an end frame. The embedded Conn
// is the link: a *net.TCPConn, or a *tls.Conn.
type LinkTunnel struct {
	net.Conn
	early []byte    // frames read behind the exit's reply
	home  *linkPool // where the link goes when its tunnel ends cleanly
}

// SendBytes sends b, bytes the customer sent before the tunnel was up.
func (t *LinkTunnel) SendBytes(b []byte) error { return link.SendBytes(t.Conn, b) }

// Send copies src into the tunnel until src ends, then sends the end
// frame; clean says the direction ended with it (not by switching the link
// to raw bytes or by an error).
func (t *LinkTunnel) Send(src net.Conn) (n int64, clean bool, err error) {
	n, raw, err := link.Send(t.Conn, src)
	return n, err == nil && !raw, err
}

// Receive copies the tunnel's bytes into dst until the exit's end frame;
// clean says the direction ended with it.
func (t *LinkTunnel) Receive(dst net.Conn) (n int64, clean bool, err error) {
	n, rest, raw, err := link.Receive(dst, t.Conn, t.early)
	t.early = nil
	if err == nil && len(rest) > 0 {
		err = fmt.Errorf("%d bytes past the end of a tunnel: %w", len(rest), link.ErrProtocol)
	}
	return n, err == nil && !raw, err
}

// Keep gives the link back to its pool for the next tunnel: call it once,
// after both directions ended clean, instead of closing.
func (t *LinkTunnel) Keep() { t.home.put(t.Conn) }
