package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/pool"
)

// countingOrigin is an HTTP origin that counts the connections it accepted
// and those it closed.
type countingOrigin struct {
	addr   string
	mu     sync.Mutex
	conn   int
	closed int
}

func (o *countingOrigin) conns() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conn
}

// open is how many of its connections the origin has not closed.
func (o *countingOrigin) open() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.conn - o.closed
}

func startCountingOrigin(t *testing.T, idle time.Duration, h http.HandlerFunc) *countingOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &countingOrigin{addr: ln.Addr().String()}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, "%s %s\n", r.Method, r.URL.Path) }
	}
	srv := &http.Server{Handler: h, IdleTimeout: idle, ConnState: func(_ net.Conn, s http.ConnState) {
		o.mu.Lock()
		defer o.mu.Unlock()
		switch s {
		case http.StateNew:
			o.conn++
		case http.StateClosed, http.StateHijacked:
			o.closed++
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return o
}

// noProbes keeps the health probes out of tests that count connections:
// on a loaded machine a probe that times out marks an exit down, and the
// gateway then drops the connections it keeps to it.
func noProbes(c *demo.Config) { c.NoProbes = true }

// settled waits until the gateway has finished with the requests through
// exit: a customer may have the whole answer a moment before the gateway
// keeps or ends its tunnel, and a request sent in that moment takes a new
// one; an origin tunnel that ended with its answer gives its link back
// only once the exit has ended its side too (retire), and a tunnel opened
// meanwhile takes a new link.
func settled(t *testing.T, f *demo.Farm, exit string) {
	t.Helper()
	waitFor(t, 10*time.Second, "requests done at the gateway", func() error {
		if n := gathered(t, f, "farmgate_tunnels_active", "exit")[exit]; n != 0 {
			return fmt.Errorf("%v active through %s", n, exit)
		}
		if n := gathered(t, f, "farmgate_origin_tunnels_ending", "")[""]; n != 0 {
			return fmt.Errorf("%v origin tunnels ending", n)
		}
		return nil
	})
}

// Requests from one sticky session to one origin reuse one tunnel through
// the exit to the origin, across customer connections, and one link.
func TestRequestsReuseTheirTunnelToTheOrigin(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	o := startCountingOrigin(t, time.Minute, nil)
	for i := range 8 {
		r := curl(t, proxyURL(f, "demo-country-us-session-reuse"), fmt.Sprintf("http://%s/r%d", o.addr, i))
		if r.status != 200 || r.body != fmt.Sprintf("GET /r%d\n", i) {
			t.Fatalf("request %d: %d %q", i, r.status, r.body)
		}
		settled(t, f, "us-1")
	}
	if n := o.conns(); n != 1 {
		t.Errorf("the origin saw %d connections for 8 requests from one egress IP, want 1", n)
	}
	if got := linkUses(t, f); got["new"] != 1 {
		t.Errorf("links: %v, want one new link", got)
	}
	if got := originTunnels(t, f); got["new"] != 1 || got["kept"] != 7 {
		t.Errorf("origin tunnels: %v, want 1 new and 7 kept", got)
	}
}

// An origin that closes idle connections (here after 100 ms) costs nothing:
// the next request finds out before it is sent and opens a new tunnel, on
// the link the closed one gave back.
func TestOriginClosingIdleTunnelsIsTransparent(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	o := startCountingOrigin(t, 100*time.Millisecond, nil)
	for i := range 4 {
		r := curl(t, proxyURL(f, "demo-country-us-session-idle"), fmt.Sprintf("http://%s/g%d", o.addr, i))
		if r.status != 200 || r.body != fmt.Sprintf("GET /g%d\n", i) {
			t.Fatalf("request %d: %d %q %v", i, r.status, r.body, r.header)
		}
		settled(t, f, "us-1")
		waitFor(t, 10*time.Second, "the origin closing its idle connection", func() error {
			if n := o.open(); n != 0 {
				return fmt.Errorf("%d open", n)
			}
			return nil
		})
	}
	if n := o.conns(); n != 4 {
		t.Errorf("the origin saw %d connections, want 4 (it closed each after 100 ms)", n)
	}
	if got := linkUses(t, f); got["new"] != 1 || got["kept"] != 3 {
		t.Errorf("links: %v, want 1 new and 3 kept", got)
	}
	// A request that cannot be replayed takes a new tunnel (on the kept
	// link), never one the origin may be closing.
	before := o.conns()
	for i := range 2 {
		r := curl(t, proxyURL(f, "demo-country-us-session-idle"), fmt.Sprintf("http://%s/d%d", o.addr, i), "-X", "DELETE")
		if r.status != 200 || r.body != fmt.Sprintf("DELETE /d%d\n", i) {
			t.Fatalf("DELETE %d: %d %q %v", i, r.status, r.body, r.header)
		}
	}
	if n := o.conns() - before; n != 2 {
		t.Errorf("2 DELETEs took %d new origin connections, want 2", n)
	}
}

// Errors past the tunnel are the destination's: the customer is told so
// and the exit stays in rotation.
func TestOriginFailuresAreTheDestinations(t *testing.T) {
	t.Parallel()
	f := startFarm(t, func(c *demo.Config) { c.Gateway.ExitReplyTimeout = time.Second })
	reset := serveTCP(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	silent := serveTCP(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		time.Sleep(3 * time.Second)
		c.Close()
	})
	for _, tc := range []struct {
		dest   string
		status int
		reason string
	}{
		{reset, 502, "destination_unreachable"},
		{silent, 504, "destination_timeout"},
	} {
		for range 6 { // more than the failures that eject an exit
			r := curl(t, proxyURL(f, "demo-country-us"), "http://"+tc.dest+"/")
			if r.status != tc.status || r.header.Get("X-Farmgate-Error") != tc.reason {
				t.Fatalf("%s: %d %q, want %d %s", tc.dest, r.status, r.header.Get("X-Farmgate-Error"), tc.status, tc.reason)
			}
		}
	}
	for _, e := range f.Pool.Exits() {
		if e.ID == "us-1" && e.State != pool.StateHealthy {
			t.Errorf("us-1 is %s after the destination's failures", e.State)
		}
	}
}

// A destination the exit refuses is refused as before, also when the
// request left with the CONNECT on a link.
func TestRefusedDestinationBehindAKeptLink(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	o := startCountingOrigin(t, time.Minute, nil)
	if r := curl(t, proxyURL(f, "demo-country-us"), "http://"+o.addr+"/"); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	r := curl(t, proxyURL(f, "demo-country-us"), "http://10.0.0.1/")
	if r.status != 403 || r.header.Get("X-Farmgate-Error") != "destination_forbidden" {
		t.Fatalf("forbidden destination: %d %q", r.status, r.header.Get("X-Farmgate-Error"))
	}
	if r := curl(t, proxyURL(f, "demo-country-us"), "http://"+o.addr+"/after"); r.status != 200 || r.body != "GET /after\n" {
		t.Fatalf("after the refusal: %d %q", r.status, r.body)
	}
}

// A request that left with the CONNECT and is longer than the exit read
// with the head does not turn a refusal into a reset: the customer is told
// the destination is forbidden, and no exit takes the blame.
func TestRefusalOfALongPipelinedRequest(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	o := startCountingOrigin(t, time.Minute, nil)
	if r := curl(t, proxyURL(f, "demo-country-us"), "http://"+o.addr+"/"); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	cookie := "Cookie: c=" + strings.Repeat("x", 12<<10)
	for range 8 {
		r := curl(t, proxyURL(f, "demo-country-us"), "http://10.0.0.1/", "-H", cookie)
		if r.status != 403 || r.header.Get("X-Farmgate-Error") != "destination_forbidden" {
			t.Fatalf("forbidden destination with a long request: %d %q", r.status, r.header.Get("X-Farmgate-Error"))
		}
	}
	got := gathered(t, f, "farmgate_tunnels_failed_total", "reason")
	if got["destination_forbidden"] != 8 || got["exit_failed"] != 0 {
		t.Errorf("failures: %v, want 8 destination_forbidden", got)
	}
}

// Answers of every shape arrive whole through an origin tunnel, and the
// tunnel is kept only when the answer ended where HTTP says it does.
func TestOriginAnswersOfEveryShape(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	raw := func(answer string) string {
		return serveTCP(t, func(c net.Conn) {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, answer)
				if strings.Contains(answer, "HTTP/1.0") {
					return // the body ends with the connection
				}
			}
		})
	}
	for _, tc := range []struct {
		name, answer, method, body string
	}{
		{"until close", "HTTP/1.0 200 OK\r\n\r\nuntil the end", "GET", "until the end"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n", "GET", "hello world"},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD", ""},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "GET", ""},
		{"not modified", "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", "GET", ""},
		{"interim", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "GET", "ok"},
	} {
		dest := raw(tc.answer)
		for i := range 3 { // the second and third use a kept tunnel where there is one
			args := []string{"-X", tc.method}
			if tc.method == "HEAD" {
				args = []string{"-I"}
			}
			r := curl(t, proxyURL(f, "demo-country-us-session-shape"), "http://"+dest+"/", args...)
			if r.exit != 0 || r.status/100 != 2 && r.status != 304 || tc.method != "HEAD" && r.body != tc.body {
				t.Fatalf("%s, request %d: curl exit %d, status %d, body %q", tc.name, i, r.exit, r.status, r.body)
			}
			settled(t, f, "us-1")
		}
	}
	// Eight tunnels: three for the answers that end with the connection,
	// one for each other shape (kept between its requests, holding its
	// link). The three that ended gave their link back: the second and
	// third, and the chunked answer's tunnel, found one kept.
	waitFor(t, 3*time.Second, "links given back", func() error {
		if got := linkUses(t, f); got["new"] != 5 || got["kept"] != 3 {
			return fmt.Errorf("links: %v, want 5 new and 3 kept (origin tunnels %v)", got, originTunnels(t, f))
		}
		return nil
	})
}

// An exit on the gateway's static list that drains is not held up by the
// idle origin tunnels the gateway keeps through it: once the probes find
// it gone, the gateway lets go of them and the drain ends.
func TestDrainingExitIsNotHeldByIdleOriginTunnels(t *testing.T) {
	t.Parallel()
	f := startFarm(t, func(c *demo.Config) {
		p := pool.DefaultConfig()
		p.LocalDC = "eu"
		p.ProbeInterval = 200 * time.Millisecond
		c.Pool = &p
	})
	o := startCountingOrigin(t, time.Minute, nil)
	for i := range 3 {
		r := curl(t, proxyURL(f, fmt.Sprintf("demo-country-us-session-drain%d", i)), "http://"+o.addr+"/")
		if r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
	}
	var us1 *demo.Exit
	for _, e := range f.Exits {
		if e.Spec.ID == "us-1" {
			us1 = e
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := us1.Server.Shutdown(ctx); err != nil {
		t.Fatalf("us-1 drain: %v after %s", err, time.Since(start))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("us-1 took %s to drain with nothing in flight", d)
	}
}

// Many customers at once against an origin that closes idle connections
// after 30 ms and some after one answer: every request is answered, as
// kept tunnels die under them and are replaced.
func TestOriginTunnelsUnderChurn(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	o := startCountingOrigin(t, 30*time.Millisecond, func(w http.ResponseWriter, r *http.Request) {
		if rand.IntN(5) == 0 {
			w.Header().Set("Connection", "close")
		}
		if rand.IntN(10) == 0 {
			time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
		}
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	})
	var fails atomic.Int64
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pu, _ := url.Parse(proxyURL(f, fmt.Sprintf("demo-session-s%d", g%7)))
			if g%2 == 0 {
				pu, _ = url.Parse(proxyURL(f, "demo"))
			}
			cl := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 10 * time.Second}
			for i := range 30 {
				m := []string{"GET", "DELETE", "HEAD"}[rand.IntN(3)]
				req, _ := http.NewRequest(m, fmt.Sprintf("http://%s/g%d/%d", o.addr, g, i), nil)
				resp, err := cl.Do(req)
				if err != nil {
					fails.Add(1)
					t.Logf("%s: %v", m, err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("%s /g%d/%d", m, g, i)
				if m == "HEAD" {
					want = ""
				}
				if resp.StatusCode != 200 || string(b) != want {
					fails.Add(1)
					t.Logf("%s: %d %q %s", m, resp.StatusCode, b, resp.Header.Get("X-Farmgate-Error"))
				}
				if rand.IntN(4) == 0 {
					time.Sleep(time.Duration(rand.IntN(60)) * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("origin connections %d, links %v", o.conns(), linkUses(t, f))
	if n := fails.Load(); n > 0 {
		t.Fatalf("%d of 600 failed", n)
	}
}

// An answer longer than a link frame makes the exit send the rest of its
// direction raw; the tunnel still carries the next requests.
func TestLongAnswersKeepTheirOriginTunnel(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	o := startCountingOrigin(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		n := 100 << 10
		if strings.HasSuffix(r.URL.Path, "small") {
			n = 10
		}
		io.WriteString(w, strings.Repeat("y", n))
	})
	for i, p := range []string{"/big", "/big", "/small", "/big", "/small"} {
		r := curl(t, proxyURL(f, "demo-country-us-session-long"), "http://"+o.addr+p)
		if want := map[bool]int{true: 10, false: 100 << 10}[p == "/small"]; r.status != 200 || len(r.body) != want {
			t.Fatalf("request %d (%s): %d, %d bytes", i, p, r.status, len(r.body))
		}
		settled(t, f, "us-1")
	}
	if n := o.conns(); n != 1 {
		t.Errorf("the origin saw %d connections for 5 requests from one egress IP, want 1", n)
	}
	if got := originTunnels(t, f); got["new"] != 1 || got["kept"] != 4 {
		t.Errorf("origin tunnels: %v, want 1 new and 4 kept", got)
	}
}

// The exit keeps a tunnel to an origin framed through long answers, so
// its link outlives the tunnel: here the origin closes after each 100 KiB
// answer, and one link carries all four tunnels.
func TestLongAnswersKeepTheLink(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	o := startCountingOrigin(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, strings.Repeat("z", 100<<10))
	})
	for i := range 4 {
		r := curl(t, proxyURL(f, "demo-country-us-session-longlink"), fmt.Sprintf("http://%s/%d", o.addr, i))
		if r.status != 200 || len(r.body) != 100<<10 {
			t.Fatalf("request %d: %d, %d bytes", i, r.status, len(r.body))
		}
		settled(t, f, "us-1")
	}
	if n := o.conns(); n != 4 {
		t.Errorf("the origin saw %d connections, want 4 (it closed each)", n)
	}
	waitFor(t, 3*time.Second, "links given back", func() error {
		if got := linkUses(t, f); got["new"] != 1 || got["kept"] != 3 {
			return fmt.Errorf("links: %v, want 1 new and 3 kept", got)
		}
		return nil
	})
}
