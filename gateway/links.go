package gateway

import (
	"net"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// linkPool keeps one farmgate exit's idle links (package link): tunnels
// through a kept link skip the TCP handshake and teardown with the exit.
type linkPool struct {
	idlePool[*net.TCPConn]

	// taken: the exit has taken a link (it is a version that knows them),
	// so bytes may follow a CONNECT framed before its reply.
	taken atomic.Bool

	// What each tunnel went over (farmgate_exit_links_total).
	kept, fresh, stale prometheus.Counter
}

func newLinkPool(max int, m *metrics) *linkPool {
	return &linkPool{
		idlePool: idlePool[*net.TCPConn]{max: max},
		kept:     m.links.WithLabelValues("kept"),
		fresh:    m.links.WithLabelValues("new"),
		stale:    m.links.WithLabelValues("stale"),
	}
}

// linkConn is an exit connection that carries its tunnel framed: a new
// link or one from the pool.
type linkConn struct {
	*net.TCPConn
	early []byte    // frames read behind the exit's reply
	home  *linkPool // where the link goes when its tunnel ends cleanly
}
