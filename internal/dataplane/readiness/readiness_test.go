package readiness

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
)

// peekUntil peeks at c until it reports something other than "nothing
// there", for at most 5 s: bytes written on loopback arrive soon, not at
// once.
func peekUntil(t *testing.T, c *net.TCPConn, p []byte, keep bool) (int, error) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; {
		n, err := Peek(c, p, keep)
		if n != 0 || err != nil || time.Now().After(deadline) {
			return n, err
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPeek(t *testing.T) {
	t.Parallel()
	a, b := tcptest.Pair(t)
	var p [8]byte
	if n, err := Peek(b, p[:], true); n != 0 || err != nil {
		t.Fatalf("Peek with nothing there = %d, %v; want 0, nil", n, err)
	}
	a.Write([]byte("abc"))
	for {
		// All three bytes went in one segment; wait for all of them.
		n, err := peekUntil(t, b, p[:], true)
		if err != nil {
			t.Fatal(err)
		}
		if n == 3 {
			break
		}
	}
	if string(p[:3]) != "abc" {
		t.Fatalf("Peek keeping = %q", p[:3])
	}
	if n, err := Peek(b, p[:2], false); err != nil || string(p[:n]) != "ab" {
		t.Fatalf("Peek taking = %q, %v", p[:n], err)
	}
	if n, err := b.Read(p[:]); err != nil || string(p[:n]) != "c" {
		t.Fatalf("Read after the peeks = %q, %v", p[:n], err)
	}
	a.Close()
	if n, err := peekUntil(t, b, p[:], true); n != 0 || err != io.EOF {
		t.Fatalf("Peek at EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	a, b := tcptest.Pair(t)
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := Wait(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Wait with nothing sent = %v, want the deadline", err)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	a.Write([]byte("x"))
	if err := Wait(b); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	// It did not consume the byte.
	var p [1]byte
	if n, err := b.Read(p[:]); n != 1 || p[0] != 'x' {
		t.Fatalf("read after Wait: %d %v", n, err)
	}
	a.Close()
	if err := Wait(b); err != nil {
		t.Fatalf("Wait at EOF = %v, want nil (the read reports EOF)", err)
	}
}

func TestReadFD(t *testing.T) {
	t.Parallel()
	a, b := tcptest.Pair(t)
	rc, err := b.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	tries := 0
	go a.Write([]byte("hello"))
	var n int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		tries++
		n, rerr = ReadFD(fd, buf)
		return rerr != syscall.EAGAIN
	}); err != nil || rerr != nil || string(buf[:n]) != "hello" {
		t.Fatalf("ReadFD = %q, %v, %v", buf[:n], err, rerr)
	}
	a.Close()
	for {
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = ReadFD(fd, buf)
			return rerr != syscall.EAGAIN
		}); err != nil {
			t.Fatal(err)
		}
		if n == 0 && rerr == nil {
			return // the end of the stream
		}
	}
}
