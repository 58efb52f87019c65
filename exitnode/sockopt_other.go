//go:build !linux

package exitnode

import (
	"net"
	"syscall"
	"time"
)

// bindAddressNoPort does nothing outside Linux: IP_BIND_ADDRESS_NO_PORT is a
// Linux socket option. Exits run on Linux; this lets the package build
// elsewhere for development.
func bindAddressNoPort(_, _ string, _ syscall.RawConn) error { return nil }

// idleFor cannot read TCP_INFO outside Linux; tunnels are then never closed
// for idleness.
func idleFor(net.Conn) (time.Duration, bool) { return 0, false }
