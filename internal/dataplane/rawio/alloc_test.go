//go:build !race

package rawio

import (
	"net"
	"testing"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
)

// The calls are on every request's path: they allocate nothing.
// (Race-detector builds allocate in the syscall package.)
func TestNoAllocations(t *testing.T) {
	a, b := tcptest.Pair(t)
	msg := []byte("0123456789")
	var p [64]byte
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := Write(a, msg); err != nil {
			t.Fatal(err)
		}
		bufs := net.Buffers{msg[:4], msg[4:]}
		if _, err := Writev(a, &bufs); err != nil {
			t.Fatal(err)
		}
		if _, err := Peek(b, p[:1], true); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(b, p[:]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write and read", allocs)
	}
}
