package tcpinfo

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

func TestReadCountsBytesAndIdleTime(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO is read on Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.CopyN(c, c, 1000) // echo 1000 bytes
		io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(make([]byte, 1000))
	io.ReadFull(c, make([]byte, 1000))
	time.Sleep(120 * time.Millisecond)
	info, ok := Read(c)
	if !ok {
		t.Fatal("Read failed on a TCP connection")
	}
	if info.BytesReceived != 1000 || info.BytesAcked != 1000 {
		t.Errorf("received %d, acked %d; want 1000 and 1000", info.BytesReceived, info.BytesAcked)
	}
	if info.Idle() < 100*time.Millisecond || info.Idle() > 5*time.Second {
		t.Errorf("idle %s after 120ms of silence", info.Idle())
	}
	if _, ok := Read(nil); ok {
		t.Error("Read(nil) ok")
	}
}
