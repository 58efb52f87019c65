package exitnode_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
	"github.com/farmgate/farmgate/internal/testkit/duplextest"
)

func TestForwardHeaderHygiene(t *testing.T) {
	t.Parallel()
	seen := make(chan *http.Request, 1)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r
		w.Header().Set("X-Farmgate-Exit", "forged")
		w.Header().Set("X-Farmgate-Error", "forged")
		w.Header().Set("X-Origin", "kept")
		w.Header().Set("Connection", "X-Secret-Hop")
		w.Header().Set("X-Secret-Hop", "dropped")
		w.Header().Set("Keep-Alive", "timeout=5")
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(origin.Close)
	_, exit := startExit(t, testConfig())

	// A raw request so nothing between the test and the exit touches headers.
	c := dialRaw(t, exit)
	req := "GET " + origin.URL + "/path?q=1 HTTP/1.1\r\n" +
		"Host: " + strings.TrimPrefix(origin.URL, "http://") + "\r\n" +
		"Proxy-Authorization: Bearer " + testToken + "\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"Connection: keep-alive, X-Hop-Named\r\n" +
		"X-Hop-Named: gone\r\n" +
		"Keep-Alive: timeout=5\r\n" +
		"X-Farmgate-Egress: 127.0.0.4\r\n" +
		"X-Farmgate-Other: gone\r\n" +
		"Accept-Encoding: gzip, br\r\n" +
		"X-Customer: Stays\r\n" +
		"\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	r := <-seen
	for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "X-Hop-Named", "Keep-Alive",
		"X-Farmgate-Egress", "X-Farmgate-Other", "Via", "X-Forwarded-For", "Forwarded", "User-Agent"} {
		if v, ok := r.Header[h]; ok {
			t.Errorf("origin saw %s: %q", h, v)
		}
	}
	if got := r.Header.Get("X-Customer"); got != "Stays" {
		t.Errorf("origin saw X-Customer %q", got)
	}
	if got := r.Header.Get("Accept-Encoding"); got != "gzip, br" {
		t.Errorf("origin saw Accept-Encoding %q, want it untouched", got)
	}
	if r.URL.RequestURI() != "/path?q=1" {
		t.Errorf("origin saw URI %q", r.URL.RequestURI())
	}
	if src, _ := netip.ParseAddrPort(r.RemoteAddr); src.Addr() != netip.MustParseAddr("127.0.0.4") {
		t.Errorf("origin saw source %s, want the requested egress 127.0.0.4", r.RemoteAddr)
	}
	for _, h := range []string{"X-Farmgate-Exit", "X-Farmgate-Error", "X-Secret-Hop", "Keep-Alive"} {
		if v, ok := resp.Header[h]; ok {
			t.Errorf("client saw origin's %s: %q", h, v)
		}
	}
	if resp.Header.Get("X-Origin") != "kept" {
		t.Errorf("origin header X-Origin lost")
	}
}

// TestForwardStreams shows bodies are streamed both ways: the origin answers
// the first request chunk before the client has sent the second, and the
// client reads the first response chunk before the origin has written the
// second.
func TestForwardStreams(t *testing.T) {
	t.Parallel()
	origin := duplextest.EchoOrigin(t)
	_, exit := startExit(t, testConfig())
	duplextest.Exchange(t, proxyClient(t, exit, authHeader()), origin.URL+"/stream")
}

func TestForwardLargeBodies(t *testing.T) {
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Got", fmt.Sprint(n))
		for range 256 {
			_, _ = w.Write(make([]byte, 16*1024))
		}
	}))
	t.Cleanup(origin.Close)
	s, exit := startExit(t, testConfig())
	const up = 3 << 20
	resp, err := proxyClient(t, exit, authHeader()).Post(origin.URL, "application/octet-stream", io.LimitReader(zeroReader{}, up))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 4<<20 || resp.Header.Get("X-Got") != fmt.Sprint(up) {
		t.Fatalf("down %d (%v), up %s", n, err, resp.Header.Get("X-Got"))
	}
	waitFor(t, func() bool { return s.ActiveTunnels() == 0 }, "slot released after the request")
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestForwardEgressBinding(t *testing.T) {
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, _ := netip.ParseAddrPort(r.RemoteAddr)
		_, _ = io.WriteString(w, ap.Addr().String())
	}))
	t.Cleanup(origin.Close)
	_, exit := startExit(t, testConfig())
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.2"} {
		resp, err := proxyClient(t, exit, withHeader(authHeader(), exitnode.HeaderEgress, ip)).Get(origin.URL + "/ip")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != ip {
			t.Fatalf("origin saw %q, want %s", b, ip)
		}
	}
}

// lines collects log lines.
type lines struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// A gateway that leaves before the destination answered (its customer gave
// up) is not logged as a refused request: nothing was refused, and the
// destination was not unreachable.
func TestAbandonedRequestIsNotARefusal(t *testing.T) {
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(origin.Close)
	var log lines
	s, err := exitnode.New(testConfig(), slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	req := "GET " + origin.URL + "/ HTTP/1.1\r\nHost: " + strings.TrimPrefix(origin.URL, "http://") + "\r\n" +
		"Proxy-Authorization: Bearer " + testToken + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for s.ActiveTunnels() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the handler logs as it returns
	if strings.Contains(log.String(), "request refused") {
		t.Errorf("an abandoned request was logged as refused:\n%s", log.String())
	}
}
