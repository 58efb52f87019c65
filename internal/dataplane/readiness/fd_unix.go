//go:build unix

package readiness

import "syscall"

const supported = true

func recvNow(fd uintptr, p []byte, keep bool) (int, error) {
	flags := syscall.MSG_DONTWAIT
	if keep {
		flags |= syscall.MSG_PEEK
	}
	for {
		n, _, err := syscall.Recvfrom(int(fd), p, flags)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}

func readFD(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}
