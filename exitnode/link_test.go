package exitnode_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/link"
)

// frame is one tunnel payload as a link carries it.
func frame(p string) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

var endFrame = []byte{0, 0, 0, 0}

// readFrames reads frames from br until the end frame and returns their
// payload.
func readFrames(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var got strings.Builder
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			t.Fatalf("read frame: %v (so far %q)", err, got.String())
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 {
			return got.String()
		}
		if n > link.MaxChunk {
			t.Fatalf("frame word %#x", n)
		}
		if _, err := io.CopyN(&got, br, int64(n)); err != nil {
			t.Fatalf("read frame payload: %v", err)
		}
	}
}

// dialExit connects to the exit at addr, within 10 s for the whole test.
func dialExit(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// sendConnect writes a CONNECT offering a link on c and reads the reply.
func sendConnect(t *testing.T, c net.Conn, br *bufio.Reader, target string) *http.Response {
	t.Helper()
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Bearer " + testToken +
		"\r\n" + link.Header + ": " + link.Version + "\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("read CONNECT reply: %v", err)
	}
	return resp
}

// A gateway that offers a link gets one: tunnels one after another on one
// connection, each framed, and Shutdown closes the idle link at once.
func TestLinkCarriesTunnelsOneAfterAnother(t *testing.T) {
	t.Parallel()
	s, addr := startExit(t, testConfig())
	echo := startEcho(t)
	c, br := dialExit(t, addr)
	for i, msg := range []string{"first", "second tunnel", "third"} {
		resp := sendConnect(t, c, br, echo.addr())
		if resp.StatusCode != 200 || resp.Header.Get(link.Header) != link.Version {
			t.Fatalf("tunnel %d: %s, %s %q", i, resp.Status, link.Header, resp.Header.Get(link.Header))
		}
		// The end frame goes in the same write: the exit must stop
		// reading the tunnel there.
		c.Write(append(append(frame(msg[:2]), frame(msg[2:])...), endFrame...))
		if got := readFrames(t, br); got != msg {
			t.Fatalf("tunnel %d: echo %q, want %q", i, got, msg)
		}
		waitFor(t, func() bool { return s.ActiveTunnels() == 0 }, "slot released")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- s.Shutdown(ctx)
	}()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle link after Shutdown: read %d, %v; want EOF", n, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// The next CONNECT may arrive in the same read as the end frame before it.
func TestLinkNextConnectRightBehindTheEnd(t *testing.T) {
	t.Parallel()
	_, addr := startExit(t, testConfig())
	echo := startEcho(t)
	c, br := dialExit(t, addr)
	if resp := sendConnect(t, c, br, echo.addr()); resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	next := "CONNECT " + echo.addr() + " HTTP/1.1\r\nProxy-Authorization: Bearer " + testToken +
		"\r\n" + link.Header + ": " + link.Version + "\r\n\r\n"
	c.Write(append(append(frame("one"), endFrame...), next...))
	if got := readFrames(t, br); got != "one" {
		t.Fatalf("echo %q", got)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("second CONNECT: %v %v", resp, err)
	}
	c.Write(append(frame("two"), endFrame...))
	if got := readFrames(t, br); got != "two" {
		t.Fatalf("second echo %q", got)
	}
}

// Without the offer the tunnel is a plain one, for gateways that predate
// links.
func TestNoLinkWithoutTheOffer(t *testing.T) {
	t.Parallel()
	_, addr := startExit(t, testConfig())
	echo := startEcho(t)
	c, br, resp := connect(t, addr, echo.addr(), authHeader(), nil)
	if resp.StatusCode != 200 || resp.Header.Get(link.Header) != "" {
		t.Fatalf("reply %s with %s %q", resp.Status, link.Header, resp.Header.Get(link.Header))
	}
	c.Write([]byte("raw"))
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(br)
	if string(got) != "raw" {
		t.Fatalf("echo %q", got)
	}
}

// A tunnel on a link that idles out is closed with its link, as a plain
// one is, and gives its slot back.
func TestIdleTunnelOnALinkIsClosed(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.IdleTimeout = 300 * time.Millisecond
	s, addr := startExit(t, cfg)
	echo := startEcho(t)
	c, br := dialExit(t, addr)
	if resp := sendConnect(t, c, br, echo.addr()); resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %s", resp.Status)
	}
	c.Write(frame("ping"))
	var hdr [8]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || string(hdr[4:]) != "ping" {
		t.Fatalf("echo %q, %v", hdr, err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if n, err := br.Read(hdr[:]); err != io.EOF {
		t.Fatalf("idle tunnel on a link: read %d, %v; want the exit to close it", n, err)
	}
	waitFor(t, func() bool { return s.ActiveTunnels() == 0 }, "slot released")
}
