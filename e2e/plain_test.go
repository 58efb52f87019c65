package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// plainConn is a customer's kept-alive connection to the gateway, spoken
// byte by byte.
type plainConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialPlain(t *testing.T, addr string) *plainConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(15 * time.Second))
	return &plainConn{t: t, c: c, br: bufio.NewReader(c)}
}

var demoCred = "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("demo:demo")) + "\r\n"

func (p *plainConn) send(s string) {
	p.t.Helper()
	if _, err := io.WriteString(p.c, s); err != nil {
		p.t.Fatal(err)
	}
}

// read reads one answer to a request of method, its body whole.
func (p *plainConn) read(method string) (*http.Response, string) {
	p.t.Helper()
	resp, err := http.ReadResponse(p.br, &http.Request{Method: method})
	if err != nil {
		p.t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		p.t.Fatalf("read body: %v", err)
	}
	return resp, string(b)
}

// cannedOrigin answers every request on a kept-alive connection with the
// bytes answer gives for its path, whatever they are.
func cannedOrigin(t *testing.T, answer func(path string) string) string {
	return serveTCP(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, answer(req.URL.Path))
		}
	})
}

// A kept-alive connection carries plain requests (served by the gateway
// itself), pipelined ones, and then requests the HTTP server serves, in
// order; each answer is the origin's, framed for the customer.
func TestPlainAndOtherRequestsShareAConnection(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	o := startCountingOrigin(t, time.Minute, nil)
	get := func(path string) string {
		return "GET http://" + o.addr + path + " HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred + "\r\n"
	}
	p := dialPlain(t, f.GatewayAddr)
	want := func(method, body string) {
		t.Helper()
		resp, got := p.read(method)
		if resp.StatusCode != 200 || got != body || resp.Header.Get("X-Farmgate-Exit") == "" {
			t.Fatalf("%s: %d %q exit %q, want 200 %q", method, resp.StatusCode, got, resp.Header.Get("X-Farmgate-Exit"), body)
		}
		if resp.Close {
			t.Fatalf("%s: the gateway closes a kept-alive connection", method)
		}
	}
	p.send(get("/one"))
	want("GET", "GET /one\n")
	p.send(get("/two") + get("/three")) // pipelined
	want("GET", "GET /two\n")
	want("GET", "GET /three\n")
	p.send("HEAD http://" + o.addr + "/four HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred + "\r\n")
	want("HEAD", "")
	p.send("POST http://" + o.addr + "/five HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred + "Content-Length: 3\r\n\r\nabc")
	want("POST", "POST /five\n")
	p.send(get("/six"))
	want("GET", "GET /six\n")

	// A customer who says close gets the answer, then the end.
	p.send("GET http://" + o.addr + "/last HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred + "Connection: close\r\n\r\n")
	resp, body := p.read("GET")
	if resp.StatusCode != 200 || body != "GET /last\n" || !resp.Close {
		t.Fatalf("last: %d %q close %v", resp.StatusCode, body, resp.Close)
	}
	if _, err := p.br.ReadByte(); err != io.EOF {
		t.Fatalf("after Connection: close: %v, want EOF", err)
	}

	// A plain connection that was refused keeps working too.
	p = dialPlain(t, f.GatewayAddr)
	p.send("GET http://" + o.addr + "/ HTTP/1.1\r\nHost: " + o.addr + "\r\n\r\n")
	if resp, _ := p.read("GET"); resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("X-Farmgate-Error") == "" ||
		resp.Header.Get("Proxy-Authenticate") == "" {
		t.Fatalf("without credentials: %d %v", resp.StatusCode, resp.Header)
	}
	p.send(get("/after"))
	want("GET", "GET /after\n")
}

// The customer gets the origin's header as it was sent: nothing guessed
// (net/http's server would sniff a Content-Type), a Date if the origin gave
// none (as RFC 9110 asks of a proxy), whichever path served the request.
func TestAnswersCarryTheOriginsHeader(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	dest := cannedOrigin(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nContent-Length: 15\r\nX-Origin: a\r\nX-Origin: b\r\n\r\n<html>hi</html>"
	})
	p := dialPlain(t, f.GatewayAddr)
	for _, req := range []string{
		"GET http://" + dest + "/ HTTP/1.1\r\nHost: " + dest + "\r\n" + demoCred + "\r\n",
		"POST http://" + dest + "/ HTTP/1.1\r\nHost: " + dest + "\r\n" + demoCred + "Content-Length: 1\r\n\r\nx",
	} {
		method, _, _ := strings.Cut(req, " ")
		p.send(req)
		resp, body := p.read(method)
		if resp.StatusCode != 200 || body != "<html>hi</html>" {
			t.Fatalf("%s: %d %q", method, resp.StatusCode, body)
		}
		if ct, ok := resp.Header["Content-Type"]; ok {
			t.Errorf("%s: Content-Type %q added", method, ct)
		}
		if resp.Header.Get("Date") == "" || strings.Join(resp.Header["X-Origin"], ",") != "a,b" {
			t.Errorf("%s: header %v", method, resp.Header)
		}
	}
}

// A request in flight when the gateway starts shutting down is answered,
// with Connection: close, and the connection ends.
func TestShutdownAnswersRequestsInFlight(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	arrived, answer := make(chan struct{}), make(chan struct{})
	o := startCountingOrigin(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-answer:
		case <-time.After(20 * time.Second):
		}
		io.WriteString(w, "late")
	})
	p := dialPlain(t, f.GatewayAddr)
	p.send("GET http://" + o.addr + "/ HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred + "\r\n")
	select {
	case <-arrived:
	case <-time.After(15 * time.Second):
		t.Fatal("the request did not reach the origin in 15 s")
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		done <- f.Gateway.Shutdown(ctx)
	}()
	// The origin answers once the gateway has stopped taking customers.
	waitFor(t, 10*time.Second, "the gateway to stop accepting", func() error {
		c, err := net.DialTimeout("tcp", f.GatewayAddr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		return errors.New("still accepting")
	})
	close(answer)
	resp, body := p.read("GET")
	if resp.StatusCode != 200 || body != "late" || !resp.Close {
		t.Fatalf("answer during shutdown: %d %q close %v", resp.StatusCode, body, resp.Close)
	}
	if _, err := p.br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want EOF", err)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// Shutdown closes kept-alive connections that wait for their next request
// at once; it does not wait for the customer to close them.
func TestShutdownClosesIdleKeptAliveConnections(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	p := dialPlain(t, f.GatewayAddr)
	p.send("GET http://" + f.Origin.HTTPAddr + "/ip HTTP/1.1\r\nHost: " + f.Origin.HTTPAddr + "\r\n" + demoCred + "\r\n")
	if resp, _ := p.read("GET"); resp.StatusCode != 200 {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := f.Gateway.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s with one idle kept-alive connection", d)
	}
	if _, err := p.br.ReadByte(); err != io.EOF {
		t.Errorf("idle connection after shutdown: %v, want EOF", err)
	}
}

// A customer who closes the connection while the origin is still thinking
// is gone at once for the gateway: the request is cancelled, the origin
// sees its connection end, and the exit's slot is free again.
func TestCustomerWhoLeavesCancelsTheRequest(t *testing.T) {
	t.Parallel()
	gone := make(chan struct{}, 1)
	dest := serveTCP(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		// No answer: wait for the gateway's side to end.
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := br.ReadByte(); err != nil {
			gone <- struct{}{}
		}
	})
	f := startFarm(t, noProbes)
	for _, method := range []string{"GET", "POST"} {
		p := dialPlain(t, f.GatewayAddr)
		req := method + " http://" + dest + "/ HTTP/1.1\r\nHost: " + dest + "\r\n" + demoCred
		if method == "POST" {
			req += "Content-Length: 1\r\n\r\nx"
		} else {
			req += "\r\n"
		}
		p.send(req)
		waitFor(t, 10*time.Second, method+": counted active", func() error {
			if activeTunnels(f) == 0 {
				return errors.New("no exit counts it")
			}
			return nil
		})
		// Whenever the customer leaves, before the gateway's watch
		// starts or after, the watch finds the connection closed.
		p.c.Close()
		select {
		case <-gone:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the origin still holds the request 5s after the customer left", method)
		}
		waitFor(t, 3*time.Second, method+": slot freed", func() error {
			if n := activeTunnels(f); n != 0 {
				return fmt.Errorf("%d still active", n)
			}
			return nil
		})
	}
}

// The gateway's own answers to plain requests match what the HTTP server
// path gives for the same origin answer: a GET with a head too long to be
// plain takes that path. (An empty answer of known length once never got
// its head on the plain path.)
func TestPlainAnswersMatchTheHTTPServers(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	answers := map[string]string{
		"/length":   "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello",
		"/empty":    "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"/none":     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"/created":  "HTTP/1.1 201 Created\r\nContent-Length: 0\r\nLocation: /x\r\n\r\n",
		"/chunked":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"/trailer":  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n0\r\nX-T: done\r\n\r\n",
		"/missing":  "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
		"/odd":      "HTTP/1.1 299 Whatever\r\nContent-Length: 2\r\n\r\nok",
		"/nothing":  "HTTP/1.1 204 No Content\r\nX-B: b\r\n\r\n",
		"/same":     "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"/dated":    "HTTP/1.1 200 OK\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Length: 1\r\n\r\nd",
		"/hop":      "HTTP/1.1 200 OK\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nContent-Length: 1\r\n\r\nh",
		"/farmgate": "HTTP/1.1 200 OK\r\nX-Farmgate-Exit: fake\r\nContent-Length: 1\r\n\r\nf",
	}
	dest := cannedOrigin(t, func(path string) string { return answers[path] })
	long := "X-Pad: " + strings.Repeat("p", 5000) + "\r\n"
	type answer struct {
		status int
		header http.Header
		body   string
		trail  http.Header
	}
	ask := func(p *plainConn, method, path, extra string) answer {
		t.Helper()
		p.send(method + " http://" + dest + path + " HTTP/1.1\r\nHost: " + dest + "\r\n" + demoCred + extra + "\r\n")
		resp, body := p.read(method)
		if resp.Close {
			t.Fatalf("%s %s: the connection closes", method, path)
		}
		resp.Header.Del("Date")
		resp.Header.Del("X-Farmgate-Exit") // which exit: rotation
		return answer{resp.StatusCode, resp.Header, body, resp.Trailer}
	}
	plain, other := dialPlain(t, f.GatewayAddr), dialPlain(t, f.GatewayAddr)
	for path := range answers {
		for _, method := range []string{"GET", "HEAD"} {
			got, want := ask(plain, method, path, ""), ask(other, method, path, long)
			if got.status != want.status || got.body != want.body || !maps.EqualFunc(got.header, want.header, slices.Equal) ||
				!maps.EqualFunc(got.trail, want.trail, slices.Equal) {
				t.Errorf("%s %s:\n plain       %d %v %q trailer %v\n http server %d %v %q trailer %v", method, path,
					got.status, got.header, got.body, got.trail, want.status, want.header, want.body, want.trail)
			}
		}
	}
}

// A request that arrives while the one before is slow to answer (and
// watched for the customer leaving) is served next, whole.
func TestRequestBehindASlowAnswer(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	slow := make(chan struct{})
	o := startCountingOrigin(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(slow)
			time.Sleep(300 * time.Millisecond) // a slow origin
		}
		io.WriteString(w, r.URL.Path)
	})
	p := dialPlain(t, f.GatewayAddr)
	get := func(path string) string {
		return "GET http://" + o.addr + path + " HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred + "\r\n"
	}
	p.send(get("/slow"))
	select {
	case <-slow: // the gateway is waiting for the answer
	case <-time.After(15 * time.Second):
		t.Fatal("the slow request did not reach the origin in 15 s")
	}
	p.send(get("/next"))
	for _, want := range []string{"/slow", "/next"} {
		if resp, body := p.read("GET"); resp.StatusCode != 200 || body != want {
			t.Fatalf("%s: %d %q", want, resp.StatusCode, body)
		}
	}
}

// A customer's Connection: close is about their connection to the gateway
// (RFC 9110 section 7.6.1): the origin does not see it, and the tunnel to
// the origin is kept for the next request, as net/http's ReverseProxy does.
// Clients such as Python's urllib send it with every request.
func TestCustomersConnectionCloseStaysWithThem(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	o := startCountingOrigin(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s connection=%q", r.Method, r.Header.Get("Connection"))
	})
	for i, method := range []string{"GET", "GET", "HEAD", "POST"} {
		args := []string{"-X", method, "-H", "Connection: close"}
		switch method {
		case "HEAD":
			args = []string{"-I", "-H", "Connection: close"}
		case "POST":
			args = append(args, "--data", "x")
		}
		r := curl(t, proxyURL(f, "demo-country-us-session-close"), "http://"+o.addr+"/", args...)
		if r.status != 200 || method != "HEAD" && r.body != method+` connection=""` {
			t.Fatalf("request %d (%s): %d %q", i, method, r.status, r.body)
		}
		settled(t, f, "us-1")
	}
	// The bodiless ones share one tunnel to the origin; the POST goes
	// through the exit's HTTP proxy, which keeps its own connection.
	if n := o.conns(); n != 2 {
		t.Errorf("the origin saw %d connections for 4 requests, want 2", n)
	}
	// The customer's own connection still ends after the answer, on
	// either path.
	for _, req := range []string{
		"GET http://" + o.addr + "/ HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred + "Connection: close\r\n\r\n",
		"POST http://" + o.addr + "/ HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred + "Connection: close\r\nContent-Length: 1\r\n\r\nx",
	} {
		p := dialPlain(t, f.GatewayAddr)
		method, _, _ := strings.Cut(req, " ")
		p.send(req)
		if resp, _ := p.read(method); resp.StatusCode != 200 || !resp.Close {
			t.Errorf("%s with Connection: close: %d, close %v", method, resp.StatusCode, resp.Close)
		}
		if _, err := p.br.ReadByte(); err != io.EOF {
			t.Errorf("%s with Connection: close: %v after the answer, want EOF", method, err)
		}
	}
}

// A request net/http's server cannot read is refused with a reason, like
// every other refusal: a malformed head, on a connection's first request or
// after others, and a head over the server's limit.
func TestUnreadableRequestsCarryAReason(t *testing.T) {
	t.Parallel()
	f := startFarm(t, noProbes)
	o := startCountingOrigin(t, time.Minute, nil)
	malformed := "GET http://" + o.addr + "/ HTTP/1.1\r\nHost: " + o.addr + "\r\nNo colon here\r\n\r\n"
	for _, tc := range []struct {
		name, before, req string
		status            int
	}{
		{"malformed first", "", malformed, http.StatusBadRequest},
		{"malformed after a POST", "POST http://" + o.addr + "/ HTTP/1.1\r\nHost: " + o.addr + "\r\n" + demoCred +
			"Content-Length: 1\r\n\r\nx", malformed, http.StatusBadRequest},
		{"too large", "", "GET http://" + o.addr + "/ HTTP/1.1\r\nHost: " + o.addr + "\r\nX-Big: " +
			strings.Repeat("b", 1<<20+8192) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
	} {
		p := dialPlain(t, f.GatewayAddr)
		if tc.before != "" {
			p.send(tc.before)
			if resp, _ := p.read("POST"); resp.StatusCode != 200 {
				t.Fatalf("%s: first request %d", tc.name, resp.StatusCode)
			}
		}
		go io.WriteString(p.c, tc.req) // the gateway may answer before reading it all
		resp, err := http.ReadResponse(p.br, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if resp.StatusCode != tc.status || resp.Header.Get("X-Farmgate-Error") != "bad_request" {
			t.Errorf("%s: %d %q, want %d bad_request", tc.name, resp.StatusCode, resp.Header.Get("X-Farmgate-Error"), tc.status)
		}
	}
}
