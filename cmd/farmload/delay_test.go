//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"
)

// The relay delivers every byte and the half-close, and never sooner than
// a WAN would: a first exchange takes the handshake's round trip plus one
// more, a later one a round trip. (Only lower bounds are checked: a slow
// machine cannot make the test fail.)
func TestDelayRelay(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	const d = 30 * time.Millisecond
	r, err := startDelayRelay(ln.Addr().String(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	start := time.Now()
	c, err := net.Dial("tcp4", r.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("first echo %q, %v", buf, err)
	}
	if took := time.Since(start); took < 4*d {
		t.Errorf("first exchange took %s, want at least %s (handshake and one round trip)", took, 4*d)
	}
	t0 := time.Now()
	c.Write([]byte("pong"))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("second echo %q, %v", buf, err)
	}
	if took := time.Since(t0); took < 2*d {
		t.Errorf("second exchange took %s, want at least %s", took, 2*d)
	}
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() {
		c.Write(payload)
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("1 MiB echo: %d bytes, %v", len(got), err)
	}
}
