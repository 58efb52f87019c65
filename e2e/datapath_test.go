package e2e

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/pool"
)

func TestTargeting(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	tests := []struct {
		name     string
		user     string
		exits    []string // any of these
		ipPrefix string
	}{
		{"country us in the default zone resi", "demo-country-us", []string{"us-1"}, "127.0.3."},
		{"country is case-insensitive", "demo-country-US", []string{"us-1"}, "127.0.3."},
		{"zone dc", "demo-zone-dc", []string{"us-2"}, "127.0.4."},
		{"country de", "demo-country-de", []string{"eu-1"}, "127.0.1."},
		{"country fr", "demo-country-fr", []string{"eu-2"}, "127.0.2."},
		{"dc us in resi", "demo-dc-us", []string{"us-1"}, "127.0.3."},
		{"keys in any order", "demo-country-us-zone-dc", []string{"us-2"}, "127.0.4."},
		{"no targeting prefers the gateway's DC (eu)", "demo", []string{"eu-1", "eu-2"}, "127.0."},
	}
	for _, tc := range tests {
		for _, scheme := range []string{"http", "https"} {
			t.Run(tc.name+"/"+scheme, func(t *testing.T) {
				t.Parallel()
				addr := f.Origin.HTTPAddr
				if scheme == "https" {
					addr = f.Origin.TLSAddr
				}
				r := curl(t, proxyURL(f, tc.user), scheme+"://"+addr+"/ip")
				if r.status != 200 {
					t.Fatalf("status %d (curl exit %d), body %q, headers %v", r.status, r.exit, r.body, r.all)
				}
				exit := r.all.Get("X-Farmgate-Exit")
				if !contains(tc.exits, exit) {
					t.Errorf("exit %q, want one of %v", exit, tc.exits)
				}
				if ip := strings.TrimSpace(r.body); !strings.HasPrefix(ip, tc.ipPrefix) {
					t.Errorf("origin saw %q, want %s*", ip, tc.ipPrefix)
				}
			})
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestRotationAndStickySessions(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	url := "http://" + f.Origin.HTTPAddr + "/ip"

	ips := map[string]int{}
	exits := map[string]int{}
	for range 40 {
		r := curl(t, proxyURL(f, "demo-country-us"), url)
		if r.status != 200 {
			t.Fatalf("rotation: status %d", r.status)
		}
		ips[strings.TrimSpace(r.body)]++
		exits[r.header.Get("X-Farmgate-Exit")]++
	}
	if len(ips) < 3 {
		t.Errorf("rotation: 40 requests without a session came from %d IPs (%v), want ≥ 3 of us-1's 4", len(ips), ips)
	}

	for _, sess := range []string{"s1", "another_one", "x"} {
		var first string
		for i := range 8 {
			for _, scheme := range []string{"http", "https"} {
				addr := f.Origin.HTTPAddr
				if scheme == "https" {
					addr = f.Origin.TLSAddr
				}
				r := curl(t, proxyURL(f, "demo-session-"+sess), scheme+"://"+addr+"/ip")
				if r.status != 200 {
					t.Fatalf("session %s: status %d", sess, r.status)
				}
				ip := strings.TrimSpace(r.body)
				if i == 0 && first == "" {
					first = ip
				} else if ip != first {
					t.Fatalf("session %s: request %d (%s) came from %s, first from %s", sess, i, scheme, ip, first)
				}
			}
		}
	}
}

func TestErrorsReachTheCustomer(t *testing.T) {
	t.Parallel()
	// A fake exit that accepts and never answers, for exit_timeout.
	stall := serveTCP(t, func(net.Conn) {})
	// A port nobody listens on, for destination_unreachable and a dead exit.
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	f := startFarm(t, func(c *demo.Config) {
		c.Customers = `customers:
  - user: demo
    password: demo
    pools: [resi, dc, slow, dead]
    default_pool: resi
  - user: narrow
    password: demo
    pools: [dc]
  - user: fenced
    password: demo
    pools: [resi]
    allow_ips: [10.0.0.0/8]
`
		c.Gateway.ExitReplyTimeout = 700 * time.Millisecond
	})
	f.Pool.Upsert(pool.Exit{ID: "slow-1", Pool: "slow", DC: "eu", Addr: "farmgate://" + stall})
	f.Pool.Upsert(pool.Exit{ID: "dead-1", Pool: "dead", DC: "eu", Addr: "farmgate://" + closedAddr})

	origin := f.Origin.HTTPAddr
	tests := []struct {
		name   string
		proxy  string
		target string // host:port
		status int
		reason string
	}{
		{"no credentials", "http://" + f.GatewayAddr, origin, 407, "auth_required"},
		{"wrong password", "http://demo:nope@" + f.GatewayAddr, origin, 407, "auth_required"},
		{"unknown user", "http://mallory:demo@" + f.GatewayAddr, origin, 407, "auth_required"},
		{"wrong password beats bad targeting", "http://demo-bogus-1:nope@" + f.GatewayAddr, origin, 407, "auth_required"},
		{"client outside the IP allowlist", "http://fenced:demo@" + f.GatewayAddr, origin, 407, "auth_required"},
		{"unknown key", proxyURL(f, "demo-bogus-1"), origin, 400, "bad_params"},
		{"malformed country", proxyURL(f, "demo-country-usa"), origin, 400, "bad_params"},
		{"malformed session", proxyURL(f, "demo-session-a.b"), origin, 400, "bad_params"},
		{"sesstime over a day", proxyURL(f, "demo-session-a-sesstime-1441"), origin, 400, "bad_params"},
		{"zone not allowed", "http://narrow-zone-resi:demo@" + f.GatewayAddr, origin, 403, "pool_forbidden"},
		{"zone that does not exist", proxyURL(f, "demo-zone-mobile"), origin, 403, "pool_forbidden"},
		{"country without exits", proxyURL(f, "demo-country-jp"), origin, 503, "no_exit_available"},
		{"dc without exits", proxyURL(f, "demo-zone-dc-dc-eu"), origin, 503, "no_exit_available"},
		{"metadata address", proxyURL(f, "demo"), "169.254.169.254:80", 403, "destination_forbidden"},
		{"private address", proxyURL(f, "demo"), "10.1.2.3:80", 403, "destination_forbidden"},
		{"closed port", proxyURL(f, "demo"), closedAddr, 502, "destination_unreachable"},
		{"exit does not answer", proxyURL(f, "demo-zone-slow"), origin, 504, "exit_timeout"},
		{"exit is down", proxyURL(f, "demo-zone-dead"), origin, 502, "exit_failed"},
	}
	for _, tc := range tests {
		for _, mode := range []string{"http", "connect"} {
			t.Run(tc.name+"/"+mode, func(t *testing.T) {
				t.Parallel()
				var extra []string
				if mode == "connect" {
					extra = append(extra, "--proxytunnel")
				}
				r := curl(t, tc.proxy, "http://"+tc.target+"/ip", extra...)
				if r.status != tc.status {
					t.Fatalf("status %d, want %d (headers %v, body %q)", r.status, tc.status, r.all, r.body)
				}
				if got := r.all.Get("X-Farmgate-Error"); got != tc.reason {
					t.Errorf("X-Farmgate-Error %q, want %q", got, tc.reason)
				}
				if tc.status == 407 && r.all.Get("Proxy-Authenticate") != `Basic realm="farmgate"` {
					t.Errorf("Proxy-Authenticate %q", r.all.Get("Proxy-Authenticate"))
				}
				if r.all.Get("X-Farmgate-Exit") != "" && tc.status >= 400 {
					// Only the exit's id on success; errors name no exit.
					t.Errorf("error reply names exit %q", r.all.Get("X-Farmgate-Exit"))
				}
			})
		}
	}
}

func TestHeaderHygiene(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			addr := f.Origin.HTTPAddr
			if scheme == "https" {
				addr = f.Origin.TLSAddr
			}
			r := curl(t, proxyURL(f, "demo-session-h"), scheme+"://"+addr+"/headers",
				"-H", "Proxy-Connection: keep-alive",
				"-H", "Connection: keep-alive, X-Hop-Secret",
				"-H", "X-Hop-Secret: 1",
				"-H", "Keep-Alive: timeout=5",
				"-H", "X-Farmgate-Debug: 1",
				"-H", "X-Custom: Keep Me",
				"-H", "Accept-Encoding: br",
				"-H", "User-Agent: customer-agent/1.0",
				"--proxy-header", "X-Farmgate-Egress: 127.0.2.1",
			)
			if r.status != 200 {
				t.Fatalf("status %d: %q", r.status, r.body)
			}
			var got http.Header
			if err := json.Unmarshal([]byte(r.body), &got); err != nil {
				t.Fatalf("decode %q: %v", r.body, err)
			}
			never := []string{"Proxy-Authorization", "X-Farmgate-Egress", "Via", "X-Forwarded-For", "Forwarded"}
			if scheme == "http" {
				// Inside a CONNECT tunnel the request is end-to-end (and
				// encrypted); only a forwarded request is the gateway's to clean.
				never = append(never, "Proxy-Connection", "X-Hop-Secret", "Keep-Alive", "X-Farmgate-Debug")
			}
			for _, k := range never {
				if v := got.Get(k); v != "" {
					t.Errorf("origin saw %s: %q", k, v)
				}
			}
			for k, want := range map[string]string{"X-Custom": "Keep Me", "Accept-Encoding": "br", "User-Agent": "customer-agent/1.0"} {
				if v := got.Get(k); v != want {
					t.Errorf("origin saw %s: %q, want %q", k, v, want)
				}
			}
			if strings.Contains(r.all.Get("X-Farmgate-Exit"), "127.") {
				t.Errorf("X-Farmgate-Exit leaks an address: %q", r.all.Get("X-Farmgate-Exit"))
			}
		})
	}
}

// SOCKS5 customers (curl --socks5-hostname) get the same targeting, sticky
// sessions and refusals, as SOCKS5 reply codes.
func TestSOCKS5Customers(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	socks := func(user, url string) curlResult {
		return curl(t, "socks5h://"+user+":demo@"+f.GatewayAddr, url)
	}
	r := socks("demo-country-us", "http://"+f.Origin.HTTPAddr+"/ip")
	if r.status != 200 || !strings.HasPrefix(strings.TrimSpace(r.body), "127.0.3.") {
		t.Fatalf("socks country us: %d %q", r.status, r.body)
	}
	r = socks("demo-zone-dc", "https://"+f.Origin.TLSAddr+"/ip")
	if r.status != 200 || !strings.HasPrefix(strings.TrimSpace(r.body), "127.0.4.") {
		t.Fatalf("socks zone dc over TLS: %d %q", r.status, r.body)
	}
	var first string
	for range 4 {
		r := socks("demo-session-sx", "http://"+f.Origin.HTTPAddr+"/ip")
		if ip := strings.TrimSpace(r.body); first == "" {
			first = ip
		} else if ip != first {
			t.Fatalf("socks sticky session moved from %s to %s", first, ip)
		}
	}
	// curl's exit codes: 97 = proxy handshake/auth failed, 97/56 for a
	// refused request; the point is no 200 and no hang.
	for _, tc := range []struct{ user, url string }{
		{"demo:wrong", "http://" + f.Origin.HTTPAddr + "/ip"},
		{"demo-zone-mobile", "http://" + f.Origin.HTTPAddr + "/ip"},
		{"demo", "http://169.254.169.254/"},
		{"demo-country-jp", "http://" + f.Origin.HTTPAddr + "/ip"},
	} {
		url := "socks5h://" + tc.user + ":demo@" + f.GatewayAddr
		if strings.Contains(tc.user, ":") {
			url = "socks5h://" + tc.user + "@" + f.GatewayAddr
		}
		r := curl(t, url, tc.url)
		if r.status == 200 || r.exit == 0 {
			t.Errorf("socks %s → %s: status %d, curl exit %d; want a refusal", tc.user, tc.url, r.status, r.exit)
		}
	}
}

// socksTry runs a raw SOCKS5 exchange and returns the sub-negotiation
// status and the request's reply code.
func socksTry(t *testing.T, gw, user, pass string, cmd byte, host string, port uint16) (authStatus, rep byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", gw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{5, 1, 2})
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[1] != 2 {
		t.Fatalf("greeting: %v %v", b, err)
	}
	msg := append([]byte{1, byte(len(user))}, user...)
	msg = append(append(msg, byte(len(pass))), pass...)
	c.Write(msg)
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("auth: %v", err)
	}
	if b[1] != 0 {
		return b[1], 0
	}
	req := append([]byte{5, cmd, 0, 3, byte(len(host))}, host...)
	req = append(req, byte(port>>8), byte(port))
	c.Write(req)
	var r [10]byte
	if _, err := io.ReadFull(c, r[:]); err != nil {
		t.Fatalf("reply: %v", err)
	}
	return 0, r[1]
}

func TestSOCKS5ReplyCodes(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	host, portStr, _ := net.SplitHostPort(f.Origin.HTTPAddr)
	port, _ := strconv.Atoi(portStr)
	tests := []struct {
		name       string
		user, pass string
		cmd        byte
		host       string
		auth, rep  byte
	}{
		{"success", "demo", "demo", 1, host, 0, 0},
		{"wrong password fails the sub-negotiation", "demo", "nope", 1, host, 1, 0},
		{"bad targeting", "demo-bogus-1", "demo", 1, host, 0, 1},
		{"zone not allowed", "demo-zone-mobile", "demo", 1, host, 0, 2},
		{"destination forbidden", "demo", "demo", 1, "169.254.169.254", 0, 2},
		{"no exit", "demo-country-jp", "demo", 1, host, 0, 1},
		{"BIND is not served", "demo", "demo", 2, host, 0, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			auth, rep := socksTry(t, f.GatewayAddr, tc.user, tc.pass, tc.cmd, tc.host, uint16(port))
			if auth != tc.auth || rep != tc.rep {
				t.Errorf("auth status %d, reply %d; want %d, %d", auth, rep, tc.auth, tc.rep)
			}
		})
	}
}

// A customer who sends no User-Agent arrives at the origin with none: no
// proxy on the way adds its own.
func TestNoUserAgentStaysAbsent(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	r := curl(t, proxyURL(f, "demo"), "http://"+f.Origin.HTTPAddr+"/headers", "-H", "User-Agent:")
	if r.status != 200 {
		t.Fatalf("status %d", r.status)
	}
	var got http.Header
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	if ua, ok := got["User-Agent"]; ok {
		t.Errorf("origin saw User-Agent %q", ua)
	}
}

// Request bodies stream through the gateway and back (curl sends
// "Expect: 100-continue" for large bodies), several requests on one
// customer connection.
func TestPostBodiesThroughTheGateway(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	dir := t.TempDir()
	payload := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	file := dir + "/body"
	if err := os.WriteFile(file, []byte(payload), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		r := curl(t, proxyURL(f, "demo"), "http://"+f.Origin.HTTPAddr+"/echo", "--data-binary", "@"+file)
		if r.status != 200 || r.body != payload {
			t.Fatalf("POST 1 MiB: status %d, %d bytes back", r.status, len(r.body))
		}
	}
}

// A kept-alive connection to an exit that the exit closed while idle is
// replaced without the customer noticing.
func TestStaleExitConnectionIsReplaced(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	url := "http://" + f.Origin.HTTPAddr + "/ip"
	if r := curl(t, proxyURL(f, "demo-country-us"), url); r.status != 200 {
		t.Fatalf("first request: %d", r.status)
	}
	// Restarting us-1 closes every connection the gateway keeps to it.
	if err := f.StopExit("us-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.RestartExit("us-1"); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if r := curl(t, proxyURL(f, "demo-country-us"), url); r.status != 200 {
			t.Fatalf("request %d after the exit restarted: %d %s", i, r.status, r.all.Get("X-Farmgate-Error"))
		}
	}
}
