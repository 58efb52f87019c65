package handoff

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
)

func TestConnReadsBufferedBytesFirst(t *testing.T) {
	t.Parallel()
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		b.Write([]byte("GET / HTTP/1.1\r\n"))
		b.Write([]byte("rest"))
		b.Close()
	}()
	br := bufio.NewReader(a)
	if _, err := br.Peek(8); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(Take(a, br))
	if err != nil || string(got) != "GET / HTTP/1.1\r\nrest" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestListener(t *testing.T) {
	t.Parallel()
	l := NewListener()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go l.Push(a)
	c, err := l.Accept()
	if err != nil || c != a {
		t.Fatalf("Accept = %v, %v", c, err)
	}
	l.Close()
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
	if l.Push(b) {
		t.Fatal("Push after Close succeeded")
	}
}
