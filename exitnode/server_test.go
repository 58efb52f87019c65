package exitnode_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
)

func TestMaxTunnels(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxTunnels = 2
	s, exit := startExit(t, cfg)
	echo := startEcho(t)
	var live []net.Conn
	for range 2 {
		c, _, resp := connect(t, exit, echo.addr(), authHeader(), nil)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		live = append(live, c)
	}
	if n := s.ActiveTunnels(); n != 2 {
		t.Fatalf("ActiveTunnels() = %d, want 2", n)
	}
	_, _, resp := connect(t, exit, echo.addr(), authHeader(), nil)
	checkErrorReply(t, resp, 503, "exit_busy")
	hresp, err := proxyClient(t, exit, authHeader()).Get("http://" + echo.addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	hresp.Body.Close()
	checkErrorReply(t, hresp, 503, "exit_busy")

	// Closing a tunnel frees its slot.
	live[0].Close()
	waitFor(t, func() bool { return s.ActiveTunnels() == 1 }, "slot freed")
	c, _, resp := connect(t, exit, echo.addr(), authHeader(), nil)
	if resp.StatusCode != 200 {
		t.Fatalf("after a slot freed: status %d", resp.StatusCode)
	}
	c.Close()
}

func TestShutdownDrainsLiveTunnel(t *testing.T) {
	t.Parallel()
	s, err := exitnode.New(testConfig(), slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	exit := ln.Addr().String()
	echo := startEcho(t)

	c, br, resp := connect(t, exit, echo.addr(), authHeader(), nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()

	// Serve returns nil, the listener is closed, the tunnel still works.
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve() = %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve did not return")
	}
	if c2, err := net.DialTimeout("tcp", exit, time.Second); err == nil {
		c2.Close()
		t.Fatal("exit still accepting after Shutdown")
	}
	for _, msg := range []string{"still", "alive"} {
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("tunnel during drain: %q, %v", buf, err)
		}
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a live tunnel", err)
	case <-time.After(100 * time.Millisecond):
	}
	c.Close()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown() = %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Shutdown did not return after the tunnel closed")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown() = %v", err)
	}
}

func TestShutdownCutsAtDeadline(t *testing.T) {
	t.Parallel()
	s, err := exitnode.New(testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	echo := startEcho(t)
	c, br, resp := connect(t, ln.Addr().String(), echo.addr(), authHeader(), nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown() = %v, want a deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("tunnel not cut")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("tunnel not cut within 2s")
	}
	if s.ActiveTunnels() != 0 {
		t.Fatalf("ActiveTunnels() = %d after the cut", s.ActiveTunnels())
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve() = %v", err)
	}
}

func TestShutdownRefusesNewRequestsOnOpenConnections(t *testing.T) {
	t.Parallel()
	s, exit := startExit(t, testConfig())
	echo := startEcho(t)
	// Hold a tunnel so the drain lasts, and open a keep-alive connection.
	tc, _, resp := connect(t, exit, echo.addr(), authHeader(), nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	defer tc.Close()
	c, err := net.Dial("tcp", exit)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() { _ = s.Shutdown(context.Background()) }()
	waitFor(t, func() bool {
		c2, err := net.DialTimeout("tcp", exit, 100*time.Millisecond)
		if err == nil {
			c2.Close()
		}
		return err != nil
	}, "listener closed")
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, _ = io.WriteString(c, "CONNECT "+echo.addr()+" HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer "+testToken+"\r\n\r\n")
	resp2, err := http.ReadResponse(bufioReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		// http.Server.Shutdown closed the idle connection before it was used:
		// also a refusal.
		return
	}
	checkErrorReply(t, resp2, 503, "exit_busy")
}

func TestReadHeaderTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ReadHeaderTimeout = 200 * time.Millisecond
	_, exit := startExit(t, cfg)
	c, err := net.Dial("tcp", exit)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_, _ = io.WriteString(c, "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n") // never finished
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, err = io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection with unfinished headers still open after 3s")
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Fatalf("closed after %v, want about 200ms", d)
	}
}
