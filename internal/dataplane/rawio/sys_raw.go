//go:build linux && !race && !norawio

package rawio

import (
	"syscall"
	"unsafe"
)

// The calls themselves: RawSyscall does not enter the runtime's syscall
// state (see the package comment). p is never empty here.

func read(fd uintptr, p []byte) (int, error) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != syscall.EINTR {
			return result(r, e)
		}
	}
}

func write(fd uintptr, p []byte) (int, error) {
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e != syscall.EINTR {
			return result(r, e)
		}
	}
}

// writev writes the first maxIov buffers of bufs, the first of them not
// empty.
func writev(fd uintptr, bufs [][]byte) (int, error) {
	var iov [maxIov]syscall.Iovec
	k := 0
	for _, b := range bufs {
		if k == len(iov) {
			break
		}
		if len(b) > 0 {
			iov[k].Base = &b[0]
			iov[k].SetLen(len(b))
			k++
		}
	}
	for {
		r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
		if e != syscall.EINTR {
			return result(r, e)
		}
	}
}

func recvNow(fd uintptr, p []byte, keep bool) (int, error) {
	flags := syscall.MSG_DONTWAIT
	if keep {
		flags |= syscall.MSG_PEEK
	}
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(ptr), uintptr(len(p)), uintptr(flags), 0, 0)
		if e != syscall.EINTR {
			return result(r, e)
		}
	}
}

func result(r uintptr, e syscall.Errno) (int, error) {
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
