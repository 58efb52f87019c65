package exitnode_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/farmgate/farmgate/exitnode"
)

const testToken = "s3cret-token"

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// testConfig is a loopback-allowed exit with egress IPs 127.0.0.2..5.
func testConfig() exitnode.Config {
	cfg := exitnode.DefaultConfig()
	cfg.ID = "t-1"
	cfg.DC = "eu"
	cfg.Pool = "resi"
	cfg.Country = "de"
	cfg.Token = testToken
	cfg.AllowDest = loopback
	cfg.Egress = []netip.Addr{
		netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
		netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5"),
	}
	cfg.DialTimeout = 2 * time.Second
	cfg.Rand = rand.New(rand.NewPCG(1, 2))
	return cfg
}

// dialRaw opens a plain connection to the exit at addr, closed when the
// test ends, whose reads and writes give up after 5 s: for tests that speak
// to the exit byte by byte.
func dialRaw(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// startExit runs an exit on a loopback port until the test ends.
func startExit(t testing.TB, cfg exitnode.Config) (*exitnode.Server, string) {
	t.Helper()
	s, err := exitnode.New(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after Shutdown", err)
			}
		case <-time.After(3 * time.Second):
			t.Errorf("Serve did not return after Shutdown")
		}
	})
	return s, ln.Addr().String()
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// echoServer accepts on 127.0.0.1 and echoes; it reports each peer address.
type echoServer struct {
	ln    net.Listener
	peers chan netip.AddrPort
}

func startEcho(t testing.TB) *echoServer {
	t.Helper()
	return startEchoOn(t, "127.0.0.1:0")
}

func startEchoOn(t testing.TB, addr string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln, peers: make(chan netip.AddrPort, 1024)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case e.peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort():
			default:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

// connect opens a connection to the exit and sends a CONNECT for target with
// extra header lines and early bytes in the same write. It returns the
// connection, a reader positioned after the reply head, and the reply.
func connect(t testing.TB, exit, target string, hdr http.Header, early []byte) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", exit, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	b.WriteString("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n")
	_ = hdr.Write(&b)
	b.WriteString("\r\n")
	if _, err := c.Write(append([]byte(b.String()), early...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("read CONNECT reply: %v", err)
	}
	return c, br, resp
}

func authHeader() http.Header {
	return http.Header{"Proxy-Authorization": {"Bearer " + testToken}}
}

func withHeader(h http.Header, k, v string) http.Header {
	h = h.Clone()
	h.Set(k, v)
	return h
}

// proxyClient returns an http.Client that sends absolute-form requests to the
// exit with the token and optional extra headers.
func proxyClient(t testing.TB, exit string, extra http.Header) *http.Client {
	t.Helper()
	tr := &http.Transport{
		Proxy:              http.ProxyURL(&url.URL{Scheme: "http", Host: exit}),
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: headerRT{extra, tr}, Timeout: 10 * time.Second}
}

type headerRT struct {
	h  http.Header
	rt http.RoundTripper
}

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.h {
		r.Header[k] = v
	}
	return h.rt.RoundTrip(r)
}

// fakeDNS answers A/AAAA queries from a table on a loopback UDP port;
// unknown names get NXDOMAIN.
type fakeDNS struct {
	pc    net.PacketConn
	names map[string][]netip.Addr // fully qualified, lower case
}

func startDNS(t testing.TB, names map[string][]netip.Addr) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{pc: pc, names: make(map[string][]netip.Addr)}
	for k, v := range names {
		f.names[strings.ToLower(k)+"."] = v
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := f.answer(buf[:n]); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

func (f *fakeDNS) answer(q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 {
		return nil
	}
	question := qs[0]
	addrs, known := f.names[strings.ToLower(question.Name.String())]
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	for _, a := range addrs {
		rrh := dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 1}
		switch {
		case question.Type == dnsmessage.TypeA && a.Is4():
			_ = b.AResource(rrh, dnsmessage.AResource{A: a.As4()})
		case question.Type == dnsmessage.TypeAAAA && a.Is6():
			_ = b.AAAAResource(rrh, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// blackhole returns a loopback address whose listen queue is full, so a SYN
// to it is dropped and a dial hangs until its timeout.
func blackhole(t testing.TB) string {
	t.Helper()
	fd, err := newBacklogZeroListener()
	if err != nil {
		t.Skipf("cannot build a full-backlog listener: %v", err)
	}
	t.Cleanup(func() { fd.close() })
	// Fill the accept queue (backlog 0 holds one connection) and the SYN
	// queue beyond it: those dials complete or hang in the background.
	var fillers []net.Conn
	for range 3 {
		c, err := net.DialTimeout("tcp", fd.addr, 200*time.Millisecond)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			t.Fatal(err)
		}
		fillers = append(fillers, c)
	}
	t.Cleanup(func() {
		for _, c := range fillers {
			_ = c.Close()
		}
	})
	return fd.addr
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
