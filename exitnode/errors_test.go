package exitnode_test

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
)

// TestErrorReplies checks every error the exit answers with, for CONNECT and
// absolute-form HTTP alike.
func TestErrorReplies(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	closedPort := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := ln.Addr().String()
		ln.Close()
		return a
	}()
	_, echoPort, _ := net.SplitHostPort(echo.addr())
	hole := blackhole(t)
	resolver := startDNS(t, map[string][]netip.Addr{
		"origin.test":    {netip.MustParseAddr("127.0.0.1")},
		"private.test":   {netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("192.168.0.1")},
		"metadata.test":  {netip.MustParseAddr("169.254.169.254")},
		"mapped.test":    {netip.MustParseAddr("::ffff:10.1.1.1")},
		"onlyv6.test":    {netip.MustParseAddr("::1")},
		"mixed.test":     {netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("127.0.0.1")},
		"nat64meta.test": {netip.MustParseAddr("64:ff9b::a9fe:a9fe")},
	})
	cfg := testConfig()
	cfg.Resolver = resolver
	cfg.AllowDest = append(cfg.AllowDest, netip.MustParsePrefix("::1/128"))
	cfg.DialTimeout = 300 * time.Millisecond
	_, exit := startExit(t, cfg)

	auth := authHeader()
	tests := []struct {
		name   string
		target string // host:port
		hdr    http.Header
		status int
		reason string
	}{
		{"ok by name", "origin.test:" + echoPort, auth, 200, ""},
		{"mixed answers use the allowed one", "mixed.test:" + echoPort, auth, 200, ""},
		{"bad egress: not ours", echo.addr(), withHeader(auth, exitnode.HeaderEgress, "127.0.0.9"), 400, "bad_egress"},
		{"bad egress: malformed", echo.addr(), withHeader(auth, exitnode.HeaderEgress, "127.0.0.x"), 400, "bad_egress"},
		{"bad egress: empty", echo.addr(), withHeader(auth, exitnode.HeaderEgress, ""), 400, "bad_egress"},
		{"forbidden: rfc1918 literal", "10.0.0.1:80", auth, 403, "destination_forbidden"},
		{"forbidden: metadata literal", "169.254.169.254:80", auth, 403, "destination_forbidden"},
		{"forbidden: ula literal", "[fd00::1]:80", auth, 403, "destination_forbidden"},
		{"forbidden: mapped literal", "[::ffff:10.0.0.1]:80", auth, 403, "destination_forbidden"},
		{"forbidden: name to rfc1918", "private.test:80", auth, 403, "destination_forbidden"},
		{"forbidden: name to metadata", "metadata.test:80", auth, 403, "destination_forbidden"},
		{"forbidden: name to mapped", "mapped.test:80", auth, 403, "destination_forbidden"},
		{"forbidden: name to nat64 metadata", "nat64meta.test:80", auth, 403, "destination_forbidden"},
		{"unreachable: refused", closedPort, auth, 502, "destination_unreachable"},
		{"unreachable: no such name", "nxdomain.test:80", auth, 502, "destination_unreachable"},
		{"unreachable: v6 from a v4 egress", "[::1]:" + echoPort, auth, 502, "destination_unreachable"},
		{"timeout", hole, auth, 504, "destination_timeout"},
		{"bad request: no port", "origin.test", auth, 400, "bad_request"},
		{"bad request: port 0", "origin.test:0", auth, 400, "bad_request"},
		{"bad request: port too big", "origin.test:70000", auth, 400, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			t.Run("connect", func(t *testing.T) {
				start := time.Now()
				c, _, resp := connect(t, exit, tc.target, tc.hdr, nil)
				checkErrorReply(t, resp, tc.status, tc.reason)
				if tc.status != 200 {
					// a refused CONNECT closes the connection
					_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
					if _, err := io.ReadAll(c); err != nil {
						t.Errorf("connection not closed after a refused CONNECT: %v", err)
					}
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("took %v", d)
				}
			})
			t.Run("http", func(t *testing.T) {
				if strings.HasPrefix(tc.name, "bad request") || strings.HasPrefix(tc.name, "ok") || strings.HasPrefix(tc.name, "mixed") {
					return // the HTTP client would refuse or default these; the echo server speaks no HTTP
				}
				resp, err := proxyClient(t, exit, tc.hdr).Get("http://" + tc.target + "/x")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				checkErrorReply(t, resp, tc.status, tc.reason)
			})
		})
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	_, exit := startExit(t, testConfig())
	tests := []struct {
		name string
		req  string
	}{
		{"origin-form, not info", "GET /other HTTP/1.1\r\nHost: x\r\n"},
		{"info with POST", "POST /farmgate/info HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"},
		{"ftp scheme", "GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", exit)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.WriteString(c, tc.req+"Proxy-Authorization: Bearer "+testToken+"\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufioReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			checkErrorReply(t, resp, 400, "bad_request")
		})
	}
}

func checkErrorReply(t *testing.T, resp *http.Response, status int, reason string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d (%s), want %d %s", resp.StatusCode, resp.Header.Get(exitnode.HeaderError), status, reason)
	}
	if got := resp.Header.Get(exitnode.HeaderError); got != reason {
		t.Fatalf("X-Farmgate-Error = %q, want %q", got, reason)
	}
}
