//go:build linux

package exitnode

import (
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// bindAddressNoPort is a net.Dialer Control func that sets
// IP_BIND_ADDRESS_NO_PORT, so that binding the egress IP does not pick a
// source port: the kernel picks it at connect time, where it may reuse a port
// held in TIME_WAIT towards another destination. Without it an exit that binds
// its egress IP runs out of ports at a few hundred closes a second.
func bindAddressNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return fmt.Errorf("set IP_BIND_ADDRESS_NO_PORT: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set IP_BIND_ADDRESS_NO_PORT: %w", serr)
	}
	return nil
}

// idleFor reports how long ago conn last sent or received data, from the
// kernel's TCP_INFO, so a spliced relay (which no user-space wrapper sees)
// can still be timed out when idle. ok is false when it cannot tell.
func idleFor(conn net.Conn) (d time.Duration, ok bool) {
	sc, isSC := conn.(syscall.Conn)
	if !isSC {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return 0, false
	}
	ms := min(info.Last_data_recv, info.Last_data_sent)
	return time.Duration(ms) * time.Millisecond, true
}
