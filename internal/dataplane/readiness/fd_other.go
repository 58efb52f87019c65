//go:build !unix

package readiness

import "syscall"

// No non-blocking peek here: Peek reports nothing there, Wait leaves the
// waiting to the conn's own Read, and ReadFD is not to be called.
const supported = false

func recvNow(uintptr, []byte, bool) (int, error) { return 0, syscall.EAGAIN }

func readFD(uintptr, []byte) (int, error) { return 0, syscall.EAGAIN }
