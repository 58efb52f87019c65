//go:build linux

package tcpinfo

import (
	"net"
	"syscall"
	"time"
	"unsafe"

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
	// A raw call, as internal/rawio makes reads and writes: getsockopt
	// never blocks, and the runtime's syscall bookkeeping would wake
	// sysmon for it (it is made for every tunnel, and by the watcher).
	var ti unix.TCPInfo
	size := uint32(unsafe.Sizeof(ti))
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO,
			uintptr(unsafe.Pointer(&ti)), uintptr(unsafe.Pointer(&size)), 0)
	}); err != nil || errno != 0 {
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
