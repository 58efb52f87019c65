package exitnode_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
)

func TestConnectRelay(t *testing.T) {
	t.Parallel()
	_, exit := startExit(t, testConfig())
	echo := startEcho(t)

	early := []byte("pipelined-right-after-the-headers\n")
	c, br, resp := connect(t, exit, echo.addr(), authHeader(), early)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT status %d", resp.StatusCode)
	}
	if resp.Status != "200 Connection established" {
		t.Errorf("status line %q", resp.Status)
	}
	// The early bytes come back first, intact.
	got := make([]byte, len(early))
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, early) {
		t.Fatalf("early bytes: got %q, %v", got, err)
	}
	// Bulk both ways, then half-close: the client closes its write side,
	// the echo server sees EOF, answers the rest and closes; the client
	// still reads everything and then EOF.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 64*1024) // 1 MiB
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	back, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, payload) {
		t.Fatalf("read back %d bytes, want %d identical bytes", len(back), len(payload))
	}
}

func TestConnectEgressBinding(t *testing.T) {
	t.Parallel()
	_, exit := startExit(t, testConfig())
	echo := startEcho(t)
	for _, ip := range []string{"127.0.0.2", "127.0.0.5", "::ffff:127.0.0.3"} {
		t.Run(ip, func(t *testing.T) {
			c, _, resp := connect(t, exit, echo.addr(), withHeader(authHeader(), exitnode.HeaderEgress, ip), nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			c.Close()
			select {
			case peer := <-echo.peers:
				if want := netip.MustParseAddr(ip).Unmap(); peer.Addr() != want {
					t.Fatalf("destination saw source %s, want %s", peer.Addr(), want)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("no connection at the destination")
			}
		})
	}
}

func TestConnectRandomEgress(t *testing.T) {
	t.Parallel()
	_, exit := startExit(t, testConfig())
	echo := startEcho(t)
	seen := map[netip.Addr]int{}
	for range 40 {
		c, _, resp := connect(t, exit, echo.addr(), authHeader(), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		c.Close()
		seen[(<-echo.peers).Addr()]++
	}
	for a := range seen {
		if !netip.MustParsePrefix("127.0.0.2/31").Contains(a) && !netip.MustParsePrefix("127.0.0.4/31").Contains(a) {
			t.Errorf("source %s is not an egress IP", a)
		}
	}
	if len(seen) < 2 {
		t.Errorf("40 tunnels without X-Farmgate-Egress all used %v; want a spread", seen)
	}
}

func TestConnectNoEgressUsesOSDefault(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Egress = nil
	_, exit := startExit(t, cfg)
	echo := startEcho(t)
	c, _, resp := connect(t, exit, echo.addr(), authHeader(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	c.Close()
	if peer := <-echo.peers; peer.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("source %s, want the OS default 127.0.0.1", peer.Addr())
	}
	_, _, resp = connect(t, exit, echo.addr(), withHeader(authHeader(), exitnode.HeaderEgress, "127.0.0.1"), nil)
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get(exitnode.HeaderError) != "bad_egress" {
		t.Fatalf("egress header on an exit without egress IPs: %d %q", resp.StatusCode, resp.Header.Get(exitnode.HeaderError))
	}
}

func TestConnectIdleTimeout(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	s, exit := startExit(t, cfg)
	echo := startEcho(t)

	// An active tunnel outlives the idle timeout.
	active, abr, resp := connect(t, exit, echo.addr(), authHeader(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	idle, ibr, resp := connect(t, exit, echo.addr(), authHeader(), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	start := time.Now()
	buf := make([]byte, 4)
	for time.Since(start) < 900*time.Millisecond {
		if _, err := active.Write([]byte("ping")); err != nil {
			t.Fatalf("active tunnel write after %v: %v", time.Since(start), err)
		}
		if _, err := io.ReadFull(abr, buf); err != nil {
			t.Fatalf("active tunnel closed after %v: %v", time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The idle one was closed by the exit.
	_ = idle.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := ibr.Read(buf); err == nil {
		t.Fatalf("idle tunnel still open: read %d bytes", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("idle tunnel not closed within 2s")
	}
	active.Close()
	waitFor(t, func() bool { return s.ActiveTunnels() == 0 }, "tunnels released")
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestConnectAfterRequestOnOneConnection: a connection that starts with an
// ordinary request belongs to the HTTP server, which must still take a
// CONNECT later on it (the gateway sends CONNECT on fresh connections, but a
// client of the exit may not).
func TestConnectAfterRequestOnOneConnection(t *testing.T) {
	t.Parallel()
	_, exit := startExit(t, testConfig())
	echo := startEcho(t)
	c := dialRaw(t, exit)
	br := bufio.NewReader(c)
	io.WriteString(c, "GET "+exitnode.InfoPath+" HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer "+testToken+"\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("info: %s", resp.Status)
	}
	io.WriteString(c, "CONNECT "+echo.addr()+" HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer "+testToken+"\r\n\r\nhello\n")
	resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT after GET: %v %v", resp, err)
	}
	line, err := br.ReadString('\n')
	if err != nil || line != "hello\n" {
		t.Fatalf("echo through the tunnel: %q %v", line, err)
	}
}
