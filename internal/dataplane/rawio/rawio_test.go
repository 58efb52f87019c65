package rawio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
)

func TestReadWriteAndEOF(t *testing.T) {
	t.Parallel()
	a, b := tcptest.Pair(t)
	if n, err := Write(a, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	var p [16]byte
	n, err := Read(b, p[:])
	if err != nil || string(p[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
	if n, err := Read(b, nil); n != 0 || err != nil {
		t.Fatalf("Read of nothing = %d, %v", n, err)
	}
	a.CloseWrite()
	if n, err := Read(b, p[:]); n != 0 || err != io.EOF {
		t.Fatalf("Read at the peer's half-close = %d, %v; want 0, io.EOF", n, err)
	}
}

// A read waits for bytes through the runtime's poller: it sees bytes that
// come later, and its deadline.
func TestReadWaitsAndHonoursTheDeadline(t *testing.T) {
	t.Parallel()
	a, b := tcptest.Pair(t)
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var p [4]byte
	if _, err := Read(b, p[:]); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with nothing sent = %v, want the deadline", err)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	go func() {
		time.Sleep(30 * time.Millisecond)
		a.Write([]byte("late"))
	}()
	if n, err := Read(b, p[:]); err != nil || string(p[:n]) != "late" {
		t.Fatalf("Read = %q, %v", p[:n], err)
	}
}

func TestCloseEndsAWaitingRead(t *testing.T) {
	t.Parallel()
	_, b := tcptest.Pair(t)
	done := make(chan error, 1)
	go func() {
		var p [4]byte
		_, err := Read(b, p[:])
		done <- err
	}()
	time.Sleep(30 * time.Millisecond)
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waits after Close")
	}
}

// A write that waits for room in the socket buffer honours the write
// deadline, and Close ends it.
func TestBlockedWriteEndsAtDeadlineAndClose(t *testing.T) {
	t.Parallel()
	big := make([]byte, 8<<20) // more than both sockets' buffers hold
	a, _ := tcptest.Pair(t)
	a.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := Write(a, big); !errors.Is(err, os.ErrDeadlineExceeded) || n == len(big) {
		t.Fatalf("Write to a peer that reads nothing = %d, %v; want part and the deadline", n, err)
	}
	c, _ := tcptest.Pair(t)
	done := make(chan error, 1)
	go func() {
		bufs := net.Buffers{big, big}
		_, err := Writev(c, &bufs)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Writev after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Writev still waits after Close")
	}
}

// A write larger than the socket buffers takes several calls and waits in
// between for the reader; every byte arrives, in order.
func TestWriteAndWritevOutlastTheSocketBuffer(t *testing.T) {
	t.Parallel()
	for _, vec := range []bool{false, true} {
		a, b := tcptest.Pair(t)
		a.SetWriteBuffer(16 << 10)
		b.SetReadBuffer(16 << 10)
		want := make([]byte, 4<<20)
		rand.Read(want)
		got := make(chan []byte, 1)
		go func() {
			time.Sleep(50 * time.Millisecond) // let the writer fill the buffers first
			all, _ := io.ReadAll(b)
			got <- all
		}()
		var n int64
		var err error
		if vec {
			// Many pieces, empty ones among them, more than one writev takes.
			var bufs net.Buffers
			for p := want; len(p) > 0; {
				k := min(len(p), 100<<10)
				bufs = append(bufs, p[:k], nil)
				p = p[k:]
			}
			n, err = Writev(a, &bufs)
			if len(bufs) != 0 {
				t.Errorf("Writev left %d buffers", len(bufs))
			}
		} else {
			var m int
			m, err = Write(a, want)
			n = int64(m)
		}
		if err != nil || n != int64(len(want)) {
			t.Fatalf("vec %v: wrote %d of %d: %v", vec, n, len(want), err)
		}
		a.Close()
		if !bytes.Equal(<-got, want) {
			t.Fatalf("vec %v: the reader got other bytes", vec)
		}
	}
}

func TestWriteToAClosedPeer(t *testing.T) {
	t.Parallel()
	a, b := tcptest.Pair(t)
	b.SetLinger(0)
	b.Close() // a reset
	time.Sleep(20 * time.Millisecond)
	var err error
	for range 10 { // the first write may still be taken by the kernel
		if _, err = Write(a, []byte("x")); err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write to a reset connection = %v, want ECONNRESET or EPIPE", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("error %v is not a write *net.OpError", err)
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
	time.Sleep(20 * time.Millisecond)
	if n, err := Peek(b, p[:], true); err != nil || string(p[:n]) != "abc" {
		t.Fatalf("Peek keeping = %q, %v", p[:n], err)
	}
	if n, err := Peek(b, p[:2], false); err != nil || string(p[:n]) != "ab" {
		t.Fatalf("Peek taking = %q, %v", p[:n], err)
	}
	if n, err := Read(b, p[:]); err != nil || string(p[:n]) != "c" {
		t.Fatalf("Read after the peeks = %q, %v", p[:n], err)
	}
	a.Close()
	time.Sleep(20 * time.Millisecond)
	if n, err := Peek(b, p[:], true); n != 0 || err != io.EOF {
		t.Fatalf("Peek at EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestWaitReadable(t *testing.T) {
	t.Parallel()
	a, b := tcptest.Pair(t)
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := WaitReadable(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitReadable with nothing sent = %v, want the deadline", err)
	}
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	go func() {
		time.Sleep(20 * time.Millisecond)
		a.Write([]byte("x"))
	}()
	if err := WaitReadable(b); err != nil {
		t.Fatalf("WaitReadable = %v", err)
	}
	// It did not consume the byte.
	var p [1]byte
	if n, err := b.Read(p[:]); n != 1 || p[0] != 'x' {
		t.Fatalf("read after WaitReadable: %d %v", n, err)
	}
	a.Close()
	if err := WaitReadable(b); err != nil {
		t.Fatalf("WaitReadable at EOF = %v, want nil (the read reports EOF)", err)
	}
}

// A conn that is not a *net.TCPConn is read and written through its own
// methods.
func TestOtherConnsUseTheirOwnMethods(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		Write(a, []byte("one"))
		bufs := net.Buffers{[]byte("two"), []byte("three")}
		Writev(a, &bufs)
	}()
	var p [16]byte
	var got []byte
	for len(got) < len("onetwothree") {
		n, err := Reader{C: b}.Read(p[:])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p[:n]...)
	}
	if string(got) != "onetwothree" {
		t.Fatalf("got %q", got)
	}
}
