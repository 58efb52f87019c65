// Package tcpinfo reads what the kernel knows about a TCP connection: bytes
// moved and how long ago data last moved. A spliced relay copies in the
// kernel, so no user-space wrapper sees its bytes; this is how the gateway
// and the exits meter and time out such tunnels without slowing them.
package tcpinfo

import (
	"net"
	"time"
)

// Info is a snapshot of one connection.
type Info struct {
	BytesReceived uint64        // payload bytes received from the peer
	BytesAcked    uint64        // payload bytes sent and acknowledged by the peer
	SinceRecv     time.Duration // since data was last received
	SinceSent     time.Duration // since data was last sent
}

// Idle is how long no data moved either way.
func (i Info) Idle() time.Duration { return min(i.SinceRecv, i.SinceSent) }

// Read returns the kernel's view of c. ok is false when c is not a TCP
// connection or the platform cannot tell.
func Read(c net.Conn) (Info, bool) { return read(c) }
