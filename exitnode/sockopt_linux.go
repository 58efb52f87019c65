//go:build linux

package exitnode

import (
	"fmt"
	"syscall"

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
