package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// billingCustomers has one customer per way in, so that each one's usage
// is that way's alone.
func billingCustomers(users ...string) string {
	var b strings.Builder
	b.WriteString("customers:\n")
	for _, u := range users {
		fmt.Fprintf(&b, "  - user: %s\n    password: demo\n    pools: [resi, dc]\n    default_pool: resi\n", u)
	}
	return b.String()
}

// waitUsage waits until user's usage today is want, and returns it.
func waitUsage(t *testing.T, f *demo.Farm, user string, want auth.Traffic) auth.Traffic {
	t.Helper()
	var got auth.Traffic
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep, err := f.Meter.Usage(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		got = rep.Today
		if got == want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// customerSide runs a customer's whole exchange on one connection to the
// gateway (say sends bytes, br reads what comes back), then reads to the
// end of the connection, which must carry a 1000-byte download last. It
// returns the bytes the customer sent and received.
func customerSide(t *testing.T, gw string, exchange func(say func(string), br *bufio.Reader)) (sent, received int64) {
	t.Helper()
	c, err := net.DialTimeout("tcp", gw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	say := func(s string) {
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
		sent += int64(len(s))
	}
	cr := &countingReader{r: c}
	br := bufio.NewReader(cr)
	exchange(say, br)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read to the end: %v", err)
	}
	if !strings.HasSuffix(string(rest), "\r\n\r\n"+strings.Repeat("\x00", 1000)) {
		t.Fatalf("no 1000-byte download at the end (%d bytes: %.200q)", len(rest), rest)
	}
	return sent, cr.n
}

// readAnswer reads one answer to a request of method, its body whole (a
// CONNECT's has none: the tunnel follows).
func readAnswer(t *testing.T, br *bufio.Reader, method string) string {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	if method == http.MethodConnect {
		if resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %s", resp.Status)
		}
		return ""
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("answer %s, %q, %v", resp.Status, b, err)
	}
	return string(b)
}

// Usage is the bytes on the customer's connection, heads included, the same
// for every way in: what the customer sent is billed up, what they received
// down, to the byte. Before, a plain http:// download of 1000 bytes billed
// the body alone (1000 down, 0 up) and the same download over CONNECT the
// tunnel's bytes without the CONNECT exchange.
func TestUsageIsTheBytesOnTheCustomersConnection(t *testing.T) {
	t.Parallel()
	f := startFarm(t, func(c *demo.Config) {
		c.NoProbes = true
		c.Customers = billingCustomers("plain", "server", "connect", "socks", "keptconnect")
	})
	origin := f.Origin.HTTPAddr
	cred := func(user string) string {
		return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":demo")) + "\r\n"
	}
	download := "GET /bytes?n=1000 HTTP/1.1\r\nHost: " + origin + "\r\nConnection: close\r\n\r\n"
	tests := []struct {
		user     string
		exchange func(say func(string), br *bufio.Reader)
	}{
		// A bodiless GET in absolute form: the gateway's own plain path.
		{"plain", func(say func(string), _ *bufio.Reader) {
			say("GET http://" + origin + "/bytes?n=1000 HTTP/1.1\r\nHost: " + origin + "\r\n" + cred("plain") + "Connection: close\r\n\r\n")
		}},
		// A GET that is not plain (it states a length) goes to net/http's
		// server, after a plain request on the same connection.
		{"server", func(say func(string), br *bufio.Reader) {
			say("GET http://" + origin + "/bytes?n=0 HTTP/1.1\r\nHost: " + origin + "\r\n" + cred("server") + "\r\n")
			readAnswer(t, br, "GET")
			say("GET http://" + origin + "/bytes?n=1000 HTTP/1.1\r\nHost: " + origin + "\r\n" + cred("server") +
				"Content-Length: 0\r\nConnection: close\r\n\r\n")
		}},
		{"connect", func(say func(string), br *bufio.Reader) {
			say("CONNECT " + origin + " HTTP/1.1\r\nHost: " + origin + "\r\n" + cred("connect") + "\r\n")
			readAnswer(t, br, "CONNECT")
			say(download)
		}},
		// A CONNECT on a connection that net/http's server served before.
		{"keptconnect", func(say func(string), br *bufio.Reader) {
			say("POST http://" + origin + "/echo HTTP/1.1\r\nHost: " + origin + "\r\n" + cred("keptconnect") + "Content-Length: 2\r\n\r\nhi")
			if b := readAnswer(t, br, "POST"); b != "hi" {
				t.Fatalf("echo %q", b)
			}
			say("CONNECT " + origin + " HTTP/1.1\r\nHost: " + origin + "\r\n" + cred("keptconnect") + "\r\n")
			readAnswer(t, br, "CONNECT")
			say(download)
		}},
		{"socks", func(say func(string), br *bufio.Reader) {
			hear := func(n int) {
				if _, err := io.ReadFull(br, make([]byte, n)); err != nil {
					t.Fatal(err)
				}
			}
			say("\x05\x01\x02")
			hear(2)
			say("\x01\x05socks\x04demo")
			hear(2)
			host, port, _ := net.SplitHostPort(origin)
			p, _ := strconv.Atoi(port)
			say("\x05\x01\x00\x03" + string([]byte{byte(len(host))}) + host + string([]byte{byte(p >> 8), byte(p)}))
			hear(10)
			say(download)
		}},
	}
	billed := map[string]auth.Traffic{}
	for _, tc := range tests {
		sent, received := customerSide(t, f.GatewayAddr, tc.exchange)
		want := auth.Traffic{Up: sent, Down: received}
		got := waitUsage(t, f, tc.user, want)
		t.Logf("%-11s customer sent %4d, received %4d; billed up %4d, down %4d", tc.user, sent, received, got.Up, got.Down)
		if got != want {
			t.Errorf("%s: billed up %d, down %d; want the %d sent and %d received on the connection", tc.user, got.Up, got.Down, sent, received)
		}
		billed[tc.user] = got
	}
	// The same download costs about the same whichever way it came.
	for _, user := range []string{"connect", "socks"} {
		if d := billed[user].Total() - billed["plain"].Total(); d < -300 || d > 300 {
			t.Errorf("%s billed %d in all, plain %d: more than 300 bytes apart", user, billed[user].Total(), billed["plain"].Total())
		}
	}
}

// curl's downloads of the same 1000 bytes through the plain path and
// through a CONNECT tunnel are billed within a few hundred bytes of each
// other, up and down both.
func TestCurlDownloadsBillAlikeEveryWay(t *testing.T) {
	t.Parallel()
	f := startFarm(t, func(c *demo.Config) {
		c.NoProbes = true
		c.Customers = billingCustomers("plain", "tunnel", "socks")
	})
	url := "http://" + f.Origin.HTTPAddr + "/bytes?n=1000"
	for _, tc := range []struct {
		user  string
		proxy string
		extra []string
	}{
		{"plain", "http://plain:demo@" + f.GatewayAddr, nil},
		{"tunnel", "http://tunnel:demo@" + f.GatewayAddr, []string{"--proxytunnel"}},
		{"socks", "socks5h://socks:demo@" + f.GatewayAddr, nil},
	} {
		if r := curl(t, tc.proxy, url, tc.extra...); r.status != 200 || len(r.body) != 1000 {
			t.Fatalf("%s: %d, %d bytes", tc.user, r.status, len(r.body))
		}
	}
	billed := map[string]auth.Traffic{}
	waitFor(t, 10*time.Second, "usage of all three", func() error {
		var plain auth.Traffic
		for _, user := range []string{"plain", "tunnel", "socks"} {
			rep, err := f.Meter.Usage(context.Background(), user)
			if err != nil {
				return err
			}
			b := rep.Today
			billed[user] = b
			if user == "plain" {
				plain = b
			}
			if b.Up <= 0 || b.Down < 1000 {
				return fmt.Errorf("%s billed up %d, down %d", user, b.Up, b.Down)
			}
			if d := b.Total() - plain.Total(); d < -300 || d > 300 {
				return fmt.Errorf("%s billed up %d, down %d; plain up %d, down %d", user, b.Up, b.Down, plain.Up, plain.Down)
			}
		}
		return nil
	})
	for _, user := range []string{"plain", "tunnel", "socks"} {
		t.Logf("curl via %-6s billed up %d, down %d", user, billed[user].Up, billed[user].Down)
	}
}
