package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// hungExit is an exit address that takes connections and reads their
// CONNECT head but never answers, as an exit stuck in a dial would. It
// says when a head arrived and when the gateway closed its connection.
type hungExit struct {
	addr   string
	heads  chan struct{}
	closed chan time.Time
}

func startHungExit(t *testing.T) *hungExit {
	t.Helper()
	h := &hungExit{heads: make(chan struct{}, 16), closed: make(chan time.Time, 16)}
	h.addr = serveTCP(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		h.heads <- struct{}{}
		io.Copy(io.Discard, br) // until the gateway closes
		h.closed <- time.Now()
	})
	return h
}

// A customer who leaves while their tunnel is being set up takes the set-up
// with them: the gateway closes its connection to an exit that has not
// answered yet at once, not when ExitReplyTimeout (here 5 s) passes, and
// the exit is not blamed. Before, CONNECT and SOCKS5 set-ups ran under
// the gateway's own context and went on for up to 15 s.
func TestCustomerWhoLeavesEndsTheTunnelSetUp(t *testing.T) {
	t.Parallel()
	var accessLog syncBuffer
	hung := startHungExit(t)
	f := startFarm(t, func(c *demo.Config) {
		// The hung exit is a plain TCP listener that reads the CONNECT.
		c.InsecureLinks = true
		c.NoProbes = true
		c.Gateway.ExitReplyTimeout = 5 * time.Second
		c.Gateway.AccessLog = slog.New(slog.NewJSONHandler(&accessLog, nil))
	})
	f.Pool.Upsert(pool.Exit{ID: "hung", DC: "eu", Pool: "resi", Country: "JP", Addr: upstream.SchemeFarmgate + "://" + hung.addr})

	tests := []struct {
		name, kind string
		open       func(c net.Conn)
	}{
		{"CONNECT", "connect", func(c net.Conn) {
			io.WriteString(c, "CONNECT "+f.Origin.HTTPAddr+" HTTP/1.1\r\nHost: "+f.Origin.HTTPAddr+"\r\n"+
				"Proxy-Authorization: Basic ZGVtby1jb3VudHJ5LWpwOmRlbW8=\r\n\r\n") // demo-country-jp:demo
		}},
		{"SOCKS5", "socks", func(c net.Conn) {
			c.Write([]byte{5, 1, 2})
			var b [2]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				t.Fatalf("greeting: %v", err)
			}
			user, pass := "demo-country-jp", "demo"
			c.Write(append(append(append([]byte{1, byte(len(user))}, user...), byte(len(pass))), pass...))
			if _, err := io.ReadFull(c, b[:]); err != nil || b[1] != 0 {
				t.Fatalf("auth: %v %v", b, err)
			}
			host, port, _ := net.SplitHostPort(f.Origin.HTTPAddr)
			p, _ := strconv.Atoi(port)
			c.Write(append(append([]byte{5, 1, 0, 3, byte(len(host))}, host...), byte(p>>8), byte(p)))
		}},
	}
	for _, tc := range tests {
		c, err := net.Dial("tcp", f.GatewayAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(20 * time.Second))
		tc.open(c)
		select {
		case <-hung.heads:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the hung exit got no CONNECT in 20 s", tc.name)
		}
		left := time.Now()
		c.Close()
		select {
		case at := <-hung.closed:
			// The target: within a second of the customer.
			d := at.Sub(left)
			t.Logf("%s: the gateway closed its connection to the exit %s after the customer left", tc.name, d.Round(time.Millisecond))
			if d > time.Second {
				t.Errorf("%s: the gateway closed its connection to the exit %s after the customer left, want within 1 s", tc.name, d.Round(time.Millisecond))
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the gateway still waits on the exit 20 s after the customer left", tc.name)
		}
	}
	checkNotEjected(t, f, "hung")
	// The access log says the customer left, not that anything failed.
	waitFor(t, 10*time.Second, "two access lines", func() error {
		if n := strings.Count(accessLog.String(), "\n"); n < 2 {
			return io.ErrShortBuffer
		}
		return nil
	})
	for _, l := range strings.Split(strings.TrimSpace(accessLog.String()), "\n") {
		var ev struct {
			Kind   string `json:"kind"`
			Status int    `json:"status"`
			Reason string `json:"reason"`
			Exit   string `json:"exit"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("access line %q: %v", l, err)
		}
		if ev.Status != 499 || ev.Reason != "client_closed" || ev.Exit != "hung" {
			t.Errorf("access line %s; want 499 client_closed through hung", l)
		}
	}
	if failed := gathered(t, f, "farmgate_tunnels_failed_total", "reason"); len(failed) != 0 {
		t.Errorf("farmgate_tunnels_failed_total by reason: %v, want none", failed)
	}
}
