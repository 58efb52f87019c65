package exitnode_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
	"github.com/farmgate/farmgate/internal/dataplane/link"
)

// tlsFarm is an exit of cfg serving on a TLS listener with a certificate
// of a test CA, and a gateway's client config for it.
type tlsFarm struct {
	s       *exitnode.Server
	addr    string
	gateway *farmtls.Holder
}

func startTLSExit(t *testing.T, cfg exitnode.Config) *tlsFarm {
	t.Helper()
	dir := t.TempDir()
	ca, err := farmtls.NewCA("test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ca.CertPEM())
	holder := func(role farmtls.Role, id string) *farmtls.Holder {
		cert, key, err := ca.Issue(role, id, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		h, err := farmtls.New(farmtls.Config{CertFile: write(id+".pem", cert), KeyFile: write(id+"-key.pem", key),
			CAFile: caFile, Role: role, ID: id})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	s, err := exitnode.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(tls.NewListener(ln, holder(farmtls.RoleExit, cfg.ID).ServerConfig())) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &tlsFarm{s: s, addr: ln.Addr().String(), gateway: holder(farmtls.RoleGateway, "gw-1")}
}

// dial opens a TLS link to the exit, as a gateway does, closed when the
// test ends; its reads and writes give up after 10 s.
func (f *tlsFarm) dial(t *testing.T) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", f.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, f.gateway.ClientConfig(testConfig().ID))
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// A plain tunnel over TLS: bytes both ways, and each side's end (TLS
// close_notify) reaches the other.
func TestTLSTunnel(t *testing.T) {
	t.Parallel()
	f := startTLSExit(t, testConfig())
	echo := startEcho(t)
	c, br := f.dial(t)
	c.Write([]byte("CONNECT " + echo.addr() + " HTTP/1.1\r\nProxy-Authorization: Bearer " + testToken + "\r\n\r\nearly "))
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT over TLS: %v %v", resp, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: many reads each way
	go func() {
		c.Write(big)
		c.CloseWrite()
	}()
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if want := append([]byte("early "), big...); !bytes.Equal(got, want) {
		t.Fatalf("echo: %d bytes, want %d", len(got), len(want))
	}
	waitFor(t, func() bool { return f.s.ActiveTunnels() == 0 }, "slot released")
}

// Tunnels one after another on one TLS link: the link idles between them
// longer than a head may take to read, and Shutdown closes it at once
// when it idles.
func TestTLSLinkCarriesTunnels(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.ReadHeaderTimeout = 200 * time.Millisecond
	f := startTLSExit(t, cfg)
	echo := startEcho(t)
	c, br := f.dial(t)
	for i, msg := range []string{"first", "second tunnel", "third"} {
		if i > 0 {
			// The idle link waits for its next CONNECT up to
			// link.IdleTimeout, not the head's ReadHeaderTimeout.
			time.Sleep(3 * cfg.ReadHeaderTimeout)
		}
		resp := sendConnect(t, c, br, echo.addr())
		if resp.StatusCode != 200 || resp.Header.Get(link.Header) != link.Version {
			t.Fatalf("tunnel %d: %s, %s %q", i, resp.Status, link.Header, resp.Header.Get(link.Header))
		}
		c.Write(append(append(frame(msg[:2]), frame(msg[2:])...), endFrame...))
		if got := readFrames(t, br); got != msg {
			t.Fatalf("tunnel %d: echo %q, want %q", i, got, msg)
		}
		waitFor(t, func() bool { return f.s.ActiveTunnels() == 0 }, "slot released")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- f.s.Shutdown(ctx)
	}()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle link after Shutdown: read %d, %v; want EOF", n, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// A bulk answer on a TLS link stays framed: nothing would splice it, so
// the switch to raw would only cost the link. Every byte arrives, the
// direction ends with an end frame, and the link carries the next CONNECT.
func TestTLSLinkStaysFramed(t *testing.T) {
	t.Parallel()
	f := startTLSExit(t, testConfig())
	echo := startEcho(t)
	c, br := f.dial(t)
	if resp := sendConnect(t, c, br, echo.addr()); resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	sent := bytes.Repeat([]byte("x"), 1<<20)
	go func() {
		for p := sent; len(p) > 0; {
			k := min(len(p), link.MaxChunk)
			c.Write(append(binary.BigEndian.AppendUint32(nil, uint32(k)), p[:k]...))
			p = p[k:]
		}
		c.Write(endFrame)
	}()
	var got int
	for ended := false; !ended; {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatalf("read frame after %d bytes: %v", got, err)
		}
		switch n := binary.BigEndian.Uint32(hdr[:]); {
		case n == 0xFFFFFFFF:
			t.Fatalf("raw word after %d bytes: a TLS link switched to raw", got)
		case n == 0:
			ended = true
		default:
			k, err := io.CopyN(io.Discard, br, int64(n))
			got += int(k)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if got != len(sent) {
		t.Fatalf("got %d framed bytes, want %d", got, len(sent))
	}
	waitFor(t, func() bool { return f.s.ActiveTunnels() == 0 }, "slot released")
	if resp := sendConnect(t, c, br, echo.addr()); resp.StatusCode != 200 {
		t.Fatalf("next CONNECT on the link: %s", resp.Status)
	}
}

// A tunnel over TLS that moves nothing is closed after IdleTimeout, as a
// plain one is: the kernel's clock of the socket under TLS says so.
func TestTLSIdleTunnelIsClosed(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	f := startTLSExit(t, cfg)
	echo := startEcho(t)
	c, br := f.dial(t)
	c.Write([]byte("CONNECT " + echo.addr() + " HTTP/1.1\r\nProxy-Authorization: Bearer " + testToken + "\r\n\r\n"))
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle tunnel over TLS: read %d, %v; want the exit to close it", n, err)
	}
	waitFor(t, func() bool { return f.s.ActiveTunnels() == 0 }, "slot released")
}

// The gateways' health check and info request are served on the TLS
// listener, and a link can go on with a CONNECT after them.
func TestTLSHealthAndInfo(t *testing.T) {
	t.Parallel()
	f := startTLSExit(t, testConfig())
	tr := &http.Transport{DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		c := tls.Client(raw, f.gateway.ClientConfig(testConfig().ID))
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, path := range []string{exitnode.HealthPath, exitnode.InfoPath} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+f.addr+path, nil)
		req.Header = authHeader()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s over TLS: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var v map[string]any
		if resp.StatusCode != 200 || json.Unmarshal(body, &v) != nil {
			t.Fatalf("GET %s over TLS: %d %s", path, resp.StatusCode, body)
		}
		if path == exitnode.InfoPath && v["id"] != testConfig().ID {
			t.Errorf("info over TLS: %s", body)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+f.addr+exitnode.HealthPath, nil)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusProxyAuthRequired {
		t.Errorf("health without the token over TLS: %v %v; want 407", resp, err)
	} else {
		resp.Body.Close()
	}
}
