//go:build !linux || race || norawio

package rawio

import (
	"syscall"
)

// Ordinary system calls: outside Linux, and in race-detector builds, whose
// syscall package tells the detector what a read or write synchronizes.

func read(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Read(int(fd), p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}

func write(fd uintptr, p []byte) (int, error) {
	for {
		n, err := syscall.Write(int(fd), p)
		if err != syscall.EINTR {
			return max(n, 0), err
		}
	}
}

// writev writes the first non-empty buffer of bufs: the race detector sees
// each write, and this path need not be fast.
func writev(fd uintptr, bufs [][]byte) (int, error) {
	for _, b := range bufs {
		if len(b) > 0 {
			return write(fd, b)
		}
	}
	return 0, nil
}

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
