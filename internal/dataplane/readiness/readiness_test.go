package readiness

import (
	"errors"
	"io"
	"net"
	"os"
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

// A read that has to wait holds no buffer while it waits.
func TestReadWhenReadyWaitsWithoutTheBuffer(t *testing.T) {
	t.Parallel()
	a, b := tcptest.Pair(t)
	held := make(chan bool, 100) // true when taken, false when given back
	buf := make([]byte, 16)
	take := func() []byte { held <- true; return buf }
	give := func() { held <- false }
	done := make(chan error, 1)
	var n int
	go func() {
		var err error
		n, err = ReadWhenReady(b, take, give)
		done <- err
	}()
	// The first try finds nothing and gives the buffer back before waiting.
	if !<-held || <-held {
		t.Fatal("the buffer was kept over a try that found nothing")
	}
	a.Write([]byte("hello"))
	if err := <-done; err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("ReadWhenReady = %q, %v", buf[:n], err)
	}
	a.Close()
	if n, err := ReadWhenReady(b, func() []byte { return buf }, func() {}); n != 0 || err != io.EOF {
		t.Fatalf("at EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

// A conn that is no socket is read with its own Read.
func TestReadWhenReadyOnAPipe(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go a.Write([]byte("hi"))
	buf := make([]byte, 8)
	n, err := ReadWhenReady(b, func() []byte { return buf }, func() { t.Error("gave back a buffer it read into") })
	if err != nil || string(buf[:n]) != "hi" {
		t.Fatalf("ReadWhenReady = %q, %v", buf[:n], err)
	}
}
