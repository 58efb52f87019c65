package exitnode_test

import (
	"fmt"

	"golang.org/x/sys/unix"
)

type backlogListener struct {
	fd   int
	addr string
}

func (l backlogListener) close() { _ = unix.Close(l.fd) }

// newBacklogZeroListener listens on 127.0.0.1 with backlog 0 and never accepts.
func newBacklogZeroListener() (backlogListener, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return backlogListener{}, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = unix.Close(fd)
		return backlogListener{}, err
	}
	if err := unix.Listen(fd, 0); err != nil {
		_ = unix.Close(fd)
		return backlogListener{}, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		_ = unix.Close(fd)
		return backlogListener{}, err
	}
	return backlogListener{fd: fd, addr: fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)}, nil
}
