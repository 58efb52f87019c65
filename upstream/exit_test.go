package upstream_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/farmgate/farmgate/exitnode"
	"github.com/farmgate/farmgate/exitnode/exittest"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

const token = "unit-token"

// realExit starts a farmgate exit on loopback and returns its pool entry.
func realExit(t *testing.T, id string) *pool.Exit {
	t.Helper()
	addr := exittest.Start(t, exitnode.Config{ID: id, Pool: "p", Token: token,
		AllowDest: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	return &pool.Exit{ID: id, Addr: upstream.SchemeFarmgate + "://" + addr}
}

// origin answers /echo with the request's body and everything else with
// its path.
func origin(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			io.Copy(w, r.Body)
			return
		}
		io.WriteString(w, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func newSet(t *testing.T, reply time.Duration) *upstream.Set {
	cfg := upstream.DefaultConfig()
	cfg.Token = token
	cfg.ReplyTimeout = reply
	s := upstream.NewSet(cfg)
	t.Cleanup(s.Close)
	return s
}

func TestTunnelThroughARealExit(t *testing.T) {
	e := realExit(t, "x1")
	target := origin(t)
	x, err := newSet(t, 15*time.Second).For(e)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // the second and third go over the link the first left
		c, err := x.Tunnel(context.Background(), target, netip.Addr{})
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		lt, ok := c.(*upstream.LinkTunnel)
		if !ok {
			t.Fatalf("tunnel %d is a %T, want a link to a farmgate exit", i, c)
		}
		lt.SetDeadline(time.Now().Add(10 * time.Second))
		if err := lt.SendBytes([]byte("GET /t HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		// The exit's frames come out of Receive as the origin's bytes.
		mine, theirs := net.Pipe()
		go func() {
			lt.Receive(theirs)
			theirs.Close()
		}()
		resp, err := http.ReadResponse(bufio.NewReader(mine), nil)
		if err != nil {
			t.Fatalf("tunnel %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		lt.Close()
		mine.Close()
		if string(body) != "/t" {
			t.Fatalf("tunnel %d: body %q", i, body)
		}
	}
}

func TestTunnelRefusedByTheExitIsAnExitError(t *testing.T) {
	e := realExit(t, "x1")
	x, err := newSet(t, 15*time.Second).For(e)
	if err != nil {
		t.Fatal(err)
	}
	// Port 0 is the exit's own bad_request: the customer's fault.
	_, err = x.Tunnel(context.Background(), "127.0.0.1:0", netip.Addr{})
	var ee *upstream.ExitError
	if !errors.As(err, &ee) || !ee.CustomerFault() {
		t.Fatalf("err = %v, want an ExitError that is the customer's fault", err)
	}
	// Nothing listens on a port just closed: the destination's fault.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := ln.Addr().String()
	ln.Close()
	_, err = x.Tunnel(context.Background(), closedAddr, netip.Addr{})
	if !errors.As(err, &ee) || !ee.DestinationFault() {
		t.Fatalf("err = %v, want an ExitError that is the destination's fault", err)
	}
}

func TestRoundTripThroughARealExit(t *testing.T) {
	e := realExit(t, "x1")
	target := origin(t)
	x, err := newSet(t, 15*time.Second).For(e)
	if err != nil {
		t.Fatal(err)
	}
	for i, path := range []string{"/a", "/b"} {
		req, _ := http.NewRequest("GET", "http://"+target+path, nil)
		resp, err := x.RoundTrip(req, netip.Addr{})
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != path {
			t.Fatalf("request %d: body %q, want %q", i, body, path)
		}
	}
	req, _ := http.NewRequest("POST", "http://"+target+"/echo", strings.NewReader("hello"))
	resp, err := x.RoundTrip(req, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Fatalf("echo %q", body)
	}
}

// failingBody gives some bytes, then fails as a customer's malformed or
// cut-short body does.
type failingBody struct{ sent bool }

var errCustomerBody = errors.New("customer's body is malformed")

func (b *failingBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "abc"), nil
	}
	return 0, errCustomerBody
}

func (b *failingBody) Close() error { return nil }

// A request body that fails to read ends the round trip at once with that
// error, so the gateway can blame the customer; it once waited the whole
// reply timeout for an answer and then blamed the destination.
func TestRequestBodyErrorEndsTheRoundTripAtOnce(t *testing.T) {
	e := realExit(t, "x1")
	target := origin(t)
	x, err := newSet(t, 30*time.Second).For(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, chunked := range []bool{true, false} {
		req, _ := http.NewRequest("POST", "http://"+target+"/echo", &failingBody{})
		req.ContentLength = 100
		if chunked {
			req.ContentLength = -1
		}
		start := time.Now()
		_, err := x.RoundTrip(req, netip.Addr{})
		if !errors.Is(err, errCustomerBody) {
			t.Fatalf("chunked %v: err = %v, want the body's error", chunked, err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("chunked %v: took %v", chunked, d)
		}
	}
}

// An https:// third-party upstream is an HTTP proxy spoken to over TLS:
// tunnels and absolute-form requests go through it, and one whose
// certificate does not chain to the configured roots is not dialled.
func TestHTTPSThirdPartyUpstream(t *testing.T) {
	prx := goproxy.NewProxyHttpServer()
	srv := httptest.NewUnstartedServer(prx)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	target := origin(t)
	e := &pool.Exit{ID: "vendor", Addr: "https://" + srv.Listener.Addr().String()}

	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	cfg := upstream.DefaultConfig()
	cfg.UpstreamRoots = roots
	set := upstream.NewSet(cfg)
	t.Cleanup(set.Close)
	x, err := set.For(e)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x.Tunnel(context.Background(), target, netip.Addr{})
	if err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /t HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	c.Close()
	if string(body) != "/t" {
		t.Fatalf("through the tunnel: %q", body)
	}
	req, _ := http.NewRequest("GET", "http://"+target+"/r", nil)
	resp, err = x.RoundTrip(req, netip.Addr{})
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "/r" {
		t.Fatalf("request: %q", body)
	}

	// Without the roots, the proxy's certificate is unknown.
	x, err = newSet(t, 15*time.Second).For(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Tunnel(context.Background(), target, netip.Addr{}); !errors.Is(err, upstream.ErrExitDial) {
		t.Fatalf("tunnel through a proxy of an unknown CA: %v, want ErrExitDial", err)
	}
}
