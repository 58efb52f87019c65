//go:build linux

package tcpinfo

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

func read(c net.Conn) (Info, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return Info{}, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return Info{}, false
	}
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || gerr != nil {
		return Info{}, false
	}
	acked := ti.Bytes_acked
	if acked > 0 {
		acked-- // the kernel counts our SYN as one acknowledged byte
	}
	return Info{
		BytesReceived: ti.Bytes_received,
		BytesAcked:    acked,
		SinceRecv:     time.Duration(ti.Last_data_recv) * time.Millisecond,
		SinceSent:     time.Duration(ti.Last_data_sent) * time.Millisecond,
	}, true
}
