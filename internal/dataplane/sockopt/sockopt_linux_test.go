//go:build linux

package sockopt

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestListenDefersAccept shows what TCP_DEFER_ACCEPT buys: a connected
// client that has sent nothing is not handed to Accept, and once it sends,
// the accepted connection already holds its bytes.
func TestListenDefersAccept(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tl := ln.(*net.TCPListener)

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tl.SetDeadline(time.Now().Add(200 * time.Millisecond))
	if a, err := tl.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		if a != nil {
			a.Close()
		}
		t.Fatalf("Accept before the client sent anything: %v, want a deadline error", err)
	}

	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	tl.SetDeadline(time.Now().Add(5 * time.Second))
	a, err := tl.Accept()
	if err != nil {
		t.Fatalf("Accept after the client sent: %v", err)
	}
	defer a.Close()
	// The bytes were there before Accept returned.
	rc, _ := a.(*net.TCPConn).SyscallConn()
	var queued int
	rc.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	if queued == 0 {
		t.Fatal("accepted connection has no bytes queued")
	}
	a.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, 3)
	if _, err := io.ReadFull(a, got); err != nil || string(got) != "GET" {
		t.Fatalf("read %q, %v", got, err)
	}

	rc, _ = tl.SyscallConn()
	var v int
	rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT) })
	if err != nil || v == 0 {
		t.Fatalf("TCP_DEFER_ACCEPT = %d, %v; want set", v, err)
	}
}

func TestBindAddressNoPort(t *testing.T) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, Control: BindAddressNoPort}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, _ := c.(*net.TCPConn).SyscallConn()
	var v int
	rc.Control(func(fd uintptr) { v, err = unix.GetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT) })
	if err != nil || v != 1 {
		t.Fatalf("IP_BIND_ADDRESS_NO_PORT = %d, %v; want 1", v, err)
	}
}
