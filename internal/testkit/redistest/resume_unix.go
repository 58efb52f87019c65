//go:build unix

package redistest

import (
	"os"
	"syscall"
)

// resume continues a server a test stopped with SIGSTOP.
func resume(p *os.Process) { p.Signal(syscall.SIGCONT) }
