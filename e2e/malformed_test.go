package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/pool"
)

// onePoolFarm starts a farm whose four exits are all in pool resi, where a
// single mark against an exit ejects it (and any number may be ejected):
// an exit's ejection count then says whether it was ever blamed.
func onePoolFarm(t *testing.T, mod func(*demo.Config)) *demo.Farm {
	t.Helper()
	return startFarm(t, func(c *demo.Config) {
		c.NoProbes = true
		c.Exits = demo.DefaultExits(4)
		for i := range c.Exits {
			c.Exits[i].Pool = "resi"
		}
		pc := pool.DefaultConfig()
		pc.LocalDC = "eu"
		pc.ConsecutiveFailures = 1
		pc.MaxEjectedPercent = 100
		c.Pool = &pc
		if mod != nil {
			mod(c)
		}
	})
}

// marked lists the exits that were ever ejected, or are not healthy.
func marked(f *demo.Farm) []string {
	var out []string
	for _, e := range f.Pool.Exits() {
		if e.Ejections != 0 || e.State != "healthy" {
			out = append(out, fmt.Sprintf("%s (%s, %d ejections: %s)", e.ID, e.State, e.Ejections, e.Reason))
		}
	}
	return out
}

// rawExchange sends req on a new connection to the gateway and reads the
// answer to a request of method; with halfClose, the customer closes its
// side after req.
func rawExchange(t *testing.T, gw, method, req string, halfClose bool) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", gw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if halfClose {
		c.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// A customer's malformed target or body is the customer's mistake: a 400
// bad_request, and no exit is blamed for it. Each of these once got 502
// exit_failed and, 15 times over, ejected half of a pool of 4 healthy
// exits.
func TestMalformedRequestsBlameNoExit(t *testing.T) {
	t.Parallel()
	f := onePoolFarm(t, nil)
	origin := f.Origin.HTTPAddr
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 63) // 255 bytes
	connect := func(target string) string {
		return "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n" + demoCred + "\r\n"
	}
	get := func(url, host string) string {
		return "GET " + url + " HTTP/1.1\r\nHost: " + host + "\r\n" + demoCred + "\r\n"
	}
	chunked := func(size string) string {
		return "POST http://" + origin + "/echo HTTP/1.1\r\nHost: " + origin + "\r\n" + demoCred +
			"Transfer-Encoding: chunked\r\n\r\n" + size + "\r\nhello world, hello\r\n0\r\n\r\n"
	}
	tests := []struct {
		name, method, req string
		halfClose         bool
	}{
		{"CONNECT port with a sign", "CONNECT", connect("127.0.0.1:+80"), false},
		{"CONNECT host over 253 bytes", "CONNECT", connect(long + ":443"), false},
		{"CONNECT host with an empty label", "CONNECT", connect("a..example:443"), false},
		{"GET port 0", "GET", get("http://127.0.0.1:0/", "127.0.0.1:0"), false},
		{"GET port 65536", "GET", get("http://127.0.0.1:65536/", "127.0.0.1:65536"), false},
		{"GET host over 253 bytes", "GET", get("http://"+long+"/", long), false},
		{"GET ftp://", "GET", get("ftp://"+origin+"/", origin), false},
		{"POST port 0", "POST", "POST http://127.0.0.1:0/ HTTP/1.1\r\nHost: 127.0.0.1:0\r\n" + demoCred + "Content-Length: 1\r\n\r\nx", false},
		{"chunk size zz", "POST", chunked("zz"), false},
		{"chunk size -1", "POST", chunked("-1"), false},
		{"chunk size 0x10", "POST", chunked("0x10"), false},
		// A customer who stops sending their body: here they close their
		// side 3 bytes into 100.
		{"body cut short", "POST", "POST http://" + origin + "/echo HTTP/1.1\r\nHost: " + origin + "\r\n" + demoCred +
			"Content-Length: 100\r\n\r\nabc", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := map[string]int{}
			for range 15 {
				resp := rawExchange(t, f.GatewayAddr, tc.method, tc.req, tc.halfClose)
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("X-Farmgate-Error") != "bad_request" {
					bad[resp.Status+" "+resp.Header.Get("X-Farmgate-Error")]++
				}
			}
			if len(bad) != 0 {
				t.Errorf("answers other than 400 bad_request, of 15: %v", bad)
			}
		})
	}
	// SOCKS5 has no 400: a malformed target gets "general failure".
	t.Run("SOCKS host over 253 bytes", func(t *testing.T) {
		bad := 0
		for range 15 {
			if _, rep := socksTry(t, f.GatewayAddr, "demo", "demo", 1, long, 443); rep != 1 {
				bad++
			}
		}
		if bad != 0 {
			t.Errorf("%d of 15 replies other than 1 (general failure)", bad)
		}
	})
	if m := marked(f); len(m) != 0 {
		t.Errorf("exits marked: %d %v; want 0", len(m), m)
	}
	// The exits still serve.
	if r := curl(t, proxyURL(f, "demo"), "http://"+origin+"/ip"); r.status != 200 {
		t.Errorf("after: %d", r.status)
	}
}
