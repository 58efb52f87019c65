package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// serveTCP runs handle, in a goroutine of its own, for every connection to
// a fresh loopback listener, and returns the listener's address. When the
// test ends the listener and every connection it accepted are closed.
func serveTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

// echoServer echoes every connection until the peer half-closes, then
// closes. It runs until the test ends.
func echoServer(t testing.TB) string {
	t.Helper()
	return serveTCP(t, func(c net.Conn) {
		defer c.Close()
		io.Copy(c, c)
	})
}

// dialTunnel opens a CONNECT tunnel through the gateway, sending early
// bytes in the same write as the request head, and returns the connection
// positioned after the 200 reply.
func dialTunnel(t testing.TB, f *demo.Farm, user, target string, early string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, br, err := openTunnel(f, user, target, early)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, br
}

// openTunnel is dialTunnel for goroutines other than the test's.
func openTunnel(f *demo.Farm, user, target string, early string) (net.Conn, *bufio.Reader, error) {
	c, err := net.Dial("tcp", f.GatewayAddr)
	if err != nil {
		return nil, nil, err
	}
	cred := base64.StdEncoding.EncodeToString([]byte(user + ":demo"))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Basic " + cred + "\r\n\r\n" + early
	if _, err := c.Write([]byte(req)); err != nil {
		c.Close()
		return nil, nil, err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("read CONNECT reply: %w", err)
	}
	if resp.StatusCode != 200 {
		c.Close()
		return nil, nil, fmt.Errorf("CONNECT: %s (%s)", resp.Status, resp.Header.Get("X-Farmgate-Error"))
	}
	c.SetReadDeadline(time.Time{})
	tunnelExitsMu.Lock()
	tunnelExits[c] = resp.Header.Get("X-Farmgate-Exit")
	tunnelExitsMu.Unlock()
	return c, br, nil
}

func TestTunnelDeliversPipelinedBytesFirstAndHalfCloses(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	echo := echoServer(t)
	c, br := dialTunnel(t, f, "demo", echo, "early-bytes|")
	if _, err := c.Write([]byte("later")); err != nil {
		t.Fatal(err)
	}
	// Half-close: the echo server sees EOF, sends back what it has, closes.
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(got) != "early-bytes|later" {
		t.Fatalf("echo %q, want %q", got, "early-bytes|later")
	}
}

// A customer that leaves takes its tunnel with it: the exit side is closed
// at once, not at the idle timeout.
func TestTunnelClosesWhenCustomerLeaves(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	// A destination that never closes on its own and never reads to EOF.
	closed := make(chan struct{})
	var once sync.Once
	dest := serveTCP(t, func(c net.Conn) {
		defer c.Close()
		// Keep sending until the write fails: the tunnel is gone.
		for {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("tick\n")); err != nil {
				once.Do(func() { close(closed) })
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	c, br := dialTunnel(t, f, "demo-country-de", dest, "")
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	c.Close()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("destination still connected 5s after the customer closed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Exits[0].Server.ActiveTunnels() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("exit eu-1 still has %d tunnels", f.Exits[0].Server.ActiveTunnels())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A tunnel that moves no byte for IdleTimeout is closed; one that moves a
// byte every tenth of it is not, however long it lasts. (With 300 ms against
// a byte every 100 ms, a busy machine under -race once paused the slow
// stream long enough to have it cut: the margin is now tenfold.)
func TestIdleTunnelIsClosedButASlowStreamIsNot(t *testing.T) {
	t.Parallel()
	const idleTimeout = time.Second
	f := startFarm(t, func(c *demo.Config) {
		c.Gateway.IdleTimeout = idleTimeout
		c.Gateway.CheckInterval = idleTimeout / 10
	})
	echo := echoServer(t)

	opened := time.Now() // before the idle tunnel's last byte
	idle, ibr := dialTunnel(t, f, "demo", echo, "")
	// Slow stream: one byte every idleTimeout/10 in one direction only (the
	// echo sends it back, so both directions move).
	slow, sbr := dialTunnel(t, f, "demo", echo, "")
	start := time.Now()
	idle.SetReadDeadline(time.Now().Add(20 * time.Second))
	idleErr := make(chan error, 1)
	var idleFor time.Duration // until the idle tunnel closed
	go func() {
		_, err := ibr.ReadByte()
		idleFor = time.Since(opened)
		idleErr <- err
	}()
	pace := time.NewTicker(idleTimeout / 10)
	defer pace.Stop()
	for time.Since(start) < 3*idleTimeout {
		if _, err := slow.Write([]byte{'x'}); err != nil {
			t.Fatalf("slow stream cut after %s: %v", time.Since(start), err)
		}
		slow.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := sbr.ReadByte(); err != nil {
			t.Fatalf("slow stream cut after %s: %v", time.Since(start), err)
		}
		<-pace.C
	}
	select {
	case err := <-idleErr:
		if err != io.EOF && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("idle tunnel: %v, want EOF", err)
		}
		if idleFor < idleTimeout {
			t.Errorf("idle tunnel closed after %s, before IdleTimeout (%s)", idleFor, idleTimeout)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("idle tunnel still open")
	}
}

func TestShutdownDrainsLiveTunnels(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	echo := echoServer(t)
	c, br := dialTunnel(t, f, "demo", echo, "")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- f.Gateway.Shutdown(ctx)
	}()
	// New customers are turned away once shutdown started...
	deadline := time.Now().Add(2 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", f.GatewayAddr, 200*time.Millisecond)
		if err != nil {
			break
		}
		nc.Close()
		if time.Now().After(deadline) {
			t.Fatal("gateway still accepting 2s into shutdown")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// ...while the live tunnel keeps working.
	if _, err := c.Write([]byte("still here\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || line != "still here\n" {
		t.Fatalf("tunnel during drain: %q %v", line, err)
	}
	select {
	case err := <-done:
		t.Fatalf("shutdown returned (%v) with a live tunnel", err)
	case <-time.After(200 * time.Millisecond):
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not return after the last tunnel closed")
	}
}

func TestShutdownDeadlineCutsTunnels(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	echo := echoServer(t)
	_, br := dialTunnel(t, f, "demo", echo, "")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := f.Gateway.Shutdown(ctx); err == nil {
		t.Error("shutdown with a live tunnel past its deadline returned nil")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("tunnel still open after the drain deadline")
	}
}

// A client may send CONNECT after plain requests on the same kept-alive
// connection; the tunnel works the same, early bytes included.
func TestConnectAfterRequestOnKeptAliveConnection(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	echo := echoServer(t)
	c, err := net.Dial("tcp", f.GatewayAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cred := "Basic " + base64.StdEncoding.EncodeToString([]byte("demo:demo"))
	br := bufio.NewReader(c)
	io.WriteString(c, "GET http://"+f.Origin.HTTPAddr+"/ip HTTP/1.1\r\nHost: "+f.Origin.HTTPAddr+"\r\nProxy-Authorization: "+cred+"\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	io.WriteString(c, "CONNECT "+echo+" HTTP/1.1\r\nHost: "+echo+"\r\nProxy-Authorization: "+cred+"\r\n\r\nearly|")
	resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	io.WriteString(c, "late")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "early|late" {
		t.Fatalf("echo %q %v, want %q", got, err, "early|late")
	}
}

type tunnelConn struct {
	c  net.Conn
	br *bufio.Reader
}

// exitOf is set by dialTunnel: the exit that carries a tunnel.
func exitOf(t testing.TB, c net.Conn) string {
	t.Helper()
	tunnelExitsMu.Lock()
	defer tunnelExitsMu.Unlock()
	return tunnelExits[c]
}

var (
	tunnelExitsMu sync.Mutex
	tunnelExits   = map[net.Conn]string{}
)

// A destination that speaks first (SMTP, SSH banners): its bytes may arrive
// at the gateway together with the exit's reply, and must still reach the
// customer first and whole.
func TestDestinationSpeaksFirst(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	banner := "220 banner " + strings.Repeat("x", 3000) + "\n"
	dest := serveTCP(t, func(c net.Conn) {
		defer c.Close()
		io.WriteString(c, banner)
		io.Copy(c, c)
	})
	for i := range 20 {
		c, br := dialTunnel(t, f, "demo", dest, "")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := br.ReadString('\n')
		if err != nil || got != banner {
			t.Fatalf("tunnel %d: banner %d bytes (%v), want %d", i, len(got), err, len(banner))
		}
		io.WriteString(c, "ping\n")
		if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("tunnel %d: echo %q %v", i, line, err)
		}
		c.Close()
	}
}
