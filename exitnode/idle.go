package exitnode

import (
	"crypto/tls"
	"net"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/tcpinfo"
)

// idleFor reports how long ago conn last sent or received data, from the
// kernel's TCP_INFO, so a spliced relay (which no user-space wrapper sees)
// can still be timed out when idle. ok is false when it cannot tell.
func idleFor(conn net.Conn) (d time.Duration, ok bool) {
	// A TLS link's bytes all cross its socket: the socket's clock is the
	// link's.
	if tc, isTLS := conn.(*tls.Conn); isTLS {
		conn = tc.NetConn()
	}
	info, ok := tcpinfo.Read(conn)
	return info.Idle(), ok
}
