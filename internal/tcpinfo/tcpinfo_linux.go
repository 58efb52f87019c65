//go:build linux

package tcpinfo

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func read(c net.Conn) (Info, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Info{}, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return Info{}, false
	}
	var ti *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ti, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
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
