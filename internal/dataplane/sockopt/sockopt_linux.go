//go:build linux

package sockopt

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

func deferAccept(_, _ string, c syscall.RawConn) error {
	return setInt(c, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, DeferAcceptSeconds, "TCP_DEFER_ACCEPT")
}

// BindAddressNoPort is a net.Dialer Control func that sets
// IP_BIND_ADDRESS_NO_PORT, so that binding a source IP does not pick a
// source port: the kernel picks it at connect time, where it may reuse a port
// held in TIME_WAIT towards another destination. Without it a dialer that
// binds its source IP runs out of ports at a few hundred closes a second.
func BindAddressNoPort(_, _ string, c syscall.RawConn) error {
	return setInt(c, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1, "IP_BIND_ADDRESS_NO_PORT")
}

func setInt(c syscall.RawConn, level, opt, v int, name string) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, v)
	}); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	if serr != nil {
		return fmt.Errorf("set %s: %w", name, serr)
	}
	return nil
}
