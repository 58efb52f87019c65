package gateway

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/exitnode"
	"github.com/farmgate/farmgate/exitnode/exittest"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// These tests run one Gateway in the test process against real exits
// (exitnode servers on loopback): admission, failover and the mapping of
// failures to answers, without starting farmgate processes.

const testToken = "gateway-unit-token"

const testCustomers = `customers:
  - user: alice
    password: secret
    pools: [resi]
    default_pool: resi
`

// startExit runs a farmgate exit on loopback and returns its pool entry.
func startExit(t *testing.T, id string) pool.Exit {
	t.Helper()
	addr := exittest.Start(t, exitnode.Config{ID: id, Pool: "resi", Token: testToken,
		AllowDest: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	return pool.Exit{ID: id, Pool: "resi", Addr: upstream.SchemeFarmgate + "://" + addr}
}

// deadExit is an exit entry whose address refuses connections.
func deadExit(t *testing.T, id string) pool.Exit {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return pool.Exit{ID: id, Pool: "resi", Addr: upstream.SchemeFarmgate + "://" + addr}
}

// origin answers every request with its path.
func origin(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type testGateway struct {
	*Gateway
	addr string
	pool *pool.Pool
}

// startGateway serves a Gateway on loopback in front of exits, with the
// pool's health left to the failures the gateway reports.
func startGateway(t *testing.T, exits ...pool.Exit) testGateway {
	t.Helper()
	return startGatewayWith(t, testCustomers, nil, exits...)
}

// startGatewayWith is startGateway with a customers file and a clock
// (nil: the system's) for the gateway and its customer store.
func startGatewayWith(t *testing.T, customers string, now func() time.Time, exits ...pool.Exit) testGateway {
	t.Helper()
	acfg := auth.DefaultConfig()
	if now != nil {
		acfg.Now = now
	}
	store, err := auth.ParseFileConfig([]byte(customers), "test customers", acfg)
	if err != nil {
		t.Fatal(err)
	}
	pcfg := pool.DefaultConfig()
	pcfg.MaxEjectedPercent = 100
	p, err := pool.New(pcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Set(exits)
	cfg := DefaultConfig()
	cfg.ExitToken = testToken
	cfg.Now = now
	g, err := New(cfg, store, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		g.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
		<-served
	})
	return testGateway{Gateway: g, addr: ln.Addr().String(), pool: p}
}

func basic(user, pass string) string {
	return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass)) + "\r\n"
}

// ask sends one request head on a new connection and returns the answer.
func ask(t *testing.T, addr, method, head string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read answer to %q: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	if method != http.MethodConnect || resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return resp
}

func TestAdmission(t *testing.T) {
	t.Parallel()
	g := startGateway(t, startExit(t, "x1"))
	target := origin(t)
	get := func(cred string) string {
		return "GET http://" + target + "/p HTTP/1.1\r\nHost: " + target + "\r\n" + cred + "\r\n"
	}
	tests := []struct {
		name, cred string
		status     int
		reason     string
	}{
		{"no credentials", "", http.StatusProxyAuthRequired, "auth_required"},
		{"wrong password", basic("alice", "nope"), http.StatusProxyAuthRequired, "auth_required"},
		{"unknown user", basic("mallory", "secret"), http.StatusProxyAuthRequired, "auth_required"},
		{"unknown targeting key", basic("alice-colour-red", "secret"), http.StatusBadRequest, "bad_params"},
		{"pool not granted", basic("alice-zone-dc", "secret"), http.StatusForbidden, "pool_forbidden"},
		{"admitted", basic("alice", "secret"), http.StatusOK, ""},
		{"admitted with targeting", basic("alice-zone-resi-session-s1", "secret"), http.StatusOK, ""},
	}
	for _, tc := range tests {
		resp := ask(t, g.addr, "GET", get(tc.cred))
		if resp.StatusCode != tc.status || resp.Header.Get("X-Farmgate-Error") != tc.reason {
			t.Errorf("%s: %d %q, want %d %q", tc.name, resp.StatusCode, resp.Header.Get("X-Farmgate-Error"), tc.status, tc.reason)
		}
		if tc.status == http.StatusProxyAuthRequired && resp.Header.Get("Proxy-Authenticate") != `Basic realm="farmgate"` {
			t.Errorf("%s: Proxy-Authenticate %q", tc.name, resp.Header.Get("Proxy-Authenticate"))
		}
		if tc.reason != "" && resp.Header.Get("Proxy-Status") == "" {
			t.Errorf("%s: no Proxy-Status on a refusal", tc.name)
		}
	}
}

// A dead exit is tried, blamed and passed over: the customer gets their
// answer from another exit. The customer's own malformed target is no
// exit's fault: 400, no retry, nobody blamed.
func TestFailoverBlamesOnlyTheExit(t *testing.T) {
	t.Parallel()
	g := startGateway(t, deadExit(t, "dead"), startExit(t, "live"))
	target := origin(t)
	cred := basic("alice", "secret")
	for i := range 6 {
		resp := ask(t, g.addr, "CONNECT", "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n"+cred+"\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("tunnel %d: %s %q", i, resp.Status, resp.Header.Get("X-Farmgate-Error"))
		}
		resp = ask(t, g.addr, "GET", "GET http://"+target+"/x HTTP/1.1\r\nHost: "+target+"\r\n"+cred+"\r\n")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: %s %q", i, resp.Status, resp.Header.Get("X-Farmgate-Error"))
		}
	}
	failures := func(id string) (n int) {
		for _, e := range g.pool.Exits() {
			if e.ID == id {
				return int(e.Ejections) + boolInt(e.State != "healthy")
			}
		}
		t.Fatalf("exit %s not in the pool", id)
		return 0
	}
	if failures("dead") == 0 {
		t.Errorf("the dead exit was never blamed: %+v", g.pool.Exits())
	}
	for range 6 {
		resp := ask(t, g.addr, "CONNECT", "CONNECT 127.0.0.1:0 HTTP/1.1\r\nHost: 127.0.0.1:0\r\n"+cred+"\r\n")
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Farmgate-Error") != "bad_request" {
			t.Fatalf("CONNECT to port 0: %s %q, want 400 bad_request", resp.Status, resp.Header.Get("X-Farmgate-Error"))
		}
	}
	if n := failures("live"); n != 0 {
		t.Errorf("the live exit was blamed for a customer's malformed target: %+v", g.pool.Exits())
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// An exit's own refusal reaches the customer as that refusal: a
// destination its policy forbids is 403 destination_forbidden, and the
// exit is not blamed for it.
func TestExitRefusalIsPassedOn(t *testing.T) {
	t.Parallel()
	addr := exittest.Start(t, exitnode.Config{ID: "strict", Pool: "resi", Token: testToken}) // loopback denied
	g := startGateway(t, pool.Exit{ID: "strict", Pool: "resi", Addr: upstream.SchemeFarmgate + "://" + addr})
	target := origin(t)
	resp := ask(t, g.addr, "CONNECT", "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n"+basic("alice", "secret")+"\r\n")
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-Farmgate-Error") != "destination_forbidden" {
		t.Fatalf("%s %q, want 403 destination_forbidden", resp.Status, resp.Header.Get("X-Farmgate-Error"))
	}
	if e := g.pool.Exits()[0]; e.State != "healthy" || e.Ejections != 0 {
		t.Fatalf("exit blamed for its policy: %+v", e)
	}
}

// A revocation between the 200 and the relay's start is not missed: the
// tunnel is listed before the customer hears 200, and whichever of the
// revocation and the relay comes second ends it.
func TestRevocationBeforeTheRelayStarts(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	for _, revokeFirst := range []bool{true, false} {
		a, b := net.Pipe()
		x, y := net.Pipe()
		t.Cleanup(func() { b.Close(); y.Close() })
		ended := make(chan struct{})
		tn := &tunnel{conns: [2]net.Conn{a, x}, customer: &auth.Customer{User: "alice"}, exit: "x1"}
		tn.done = func(up, down int64) { close(ended) }
		g.tunnels.Store(tn, struct{}{})
		deny := func(string) bool { return false }
		if revokeFirst {
			if n := g.CutRevoked(deny); n != 1 {
				t.Fatalf("cut %d tunnels, want 1", n)
			}
			g.relay(tn)
		} else {
			g.relay(tn)
			g.CutRevoked(deny)
		}
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("revoke first %v: the revoked tunnel kept running", revokeFirst)
		}
	}
}

// A CONNECT refused for want of credentials leaves the connection open:
// the browser's next CONNECT, with them, goes on it. The 200 carries a
// Proxy-Status naming the exit.
func TestConnectAfterA407OnTheSameConnection(t *testing.T) {
	t.Parallel()
	g := startGateway(t, startExit(t, "x1"))
	target := origin(t)
	c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	connect := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	for _, cred := range []string{"", basic("alice", "nope")} {
		io.WriteString(c, connect+cred+"\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusProxyAuthRequired || resp.Close {
			t.Fatalf("%s, close %v; want a 407 that keeps the connection", resp.Status, resp.Close)
		}
	}
	io.WriteString(c, connect+basic("alice", "secret")+"\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT after the 407s: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT after the 407s: %s", resp.Status)
	}
	if ps := resp.Header.Get("Proxy-Status"); ps != `farmgate; next-hop="x1"` {
		t.Errorf("Proxy-Status %q", ps)
	}
	io.WriteString(c, "GET /through HTTP/1.1\r\nHost: o\r\n\r\n")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "/through" {
		t.Fatalf("through the tunnel: %q", body)
	}
	// Any other refusal still closes: a 403 for a pool not granted.
	resp = ask(t, g.addr, "CONNECT", connect+basic("alice-zone-dc", "secret")+"\r\n")
	if resp.StatusCode != http.StatusForbidden || !resp.Close {
		t.Fatalf("%s, close %v; want a 403 that closes", resp.Status, resp.Close)
	}
}

// An admitted customer's tunnel ends when their account expires by the
// gateway's clock, and not before.
func TestTunnelEndsWhenTheAccountExpires(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	expires := clock.Add(time.Hour).UTC().Format(time.RFC3339)
	customers := "customers:\n  - user: alice\n    password: secret\n    pools: [resi]\n    expires: " + expires + "\n"
	g := startGatewayWith(t, customers, now, startExit(t, "x1"))
	target := origin(t)
	c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n"+basic("alice", "secret")+"\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	g.watchOnce()
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := br.ReadByte(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the tunnel ended before the account expired: %v", err)
	}
	mu.Lock()
	clock = clock.Add(2 * time.Hour)
	mu.Unlock()
	g.watchOnce()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after the expiry: read %v, want the tunnel closed", err)
	}
}
