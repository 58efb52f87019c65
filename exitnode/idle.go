package exitnode

import (
	"net"
	"time"

	"github.com/farmgate/farmgate/internal/tcpinfo"
)

// idleFor reports how long ago conn last sent or received data, from the
// kernel's TCP_INFO, so a spliced relay (which no user-space wrapper sees)
// can still be timed out when idle. ok is false when it cannot tell.
func idleFor(conn net.Conn) (d time.Duration, ok bool) {
	info, ok := tcpinfo.Read(conn)
	return info.Idle(), ok
}
