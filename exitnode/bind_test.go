package exitnode_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
)

// sinks starts n loopback listeners that accept and wait for the peer to
// close first, so TIME_WAIT lands on the dialling (egress-bound) side.
func sinks(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.Copy(io.Discard, c)
					_ = c.Close()
				}()
			}
		}()
		t.Cleanup(func() { _ = ln.Close(); <-done })
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// churn dials count connections bound to local, spread over dests, closing
// each at once from the dialling side. It returns how many succeeded and the
// first error.
func churn(local netip.Addr, dests []string, count int, noPort bool) (int, error) {
	for i := range count {
		c, err := exitnode.DialFrom(context.Background(), local, loopback, dests[i%len(dests)], noPort)
		if err != nil {
			return i, err
		}
		_ = c.Close()
	}
	return count, nil
}

// TestBindNoPortChurn opens and closes thousands of egress-bound connections
// a second and checks none fails: IP_BIND_ADDRESS_NO_PORT lets the kernel
// pick the source port at connect time.
func TestBindNoPortChurn(t *testing.T) {
	t.Parallel()
	dests := sinks(t, 4)
	const count = 4000
	start := time.Now()
	n, err := churn(netip.MustParseAddr("127.0.0.6"), dests, count, true)
	if err != nil {
		t.Fatalf("bound dial %d of %d failed: %v", n+1, count, err)
	}
	d := time.Since(start)
	t.Logf("%d bound connect+close in %v (%.0f/s)", count, d, count/d.Seconds())
	if d > 8*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestTunnelChurn opens and closes tunnels through the exit, each from a
// chosen egress IP, as fast as it can for a bounded count.
func TestTunnelChurn(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	s, exit := startExit(t, cfg)
	dests := sinks(t, 2)
	const count = 1000
	start := time.Now()
	for i := range count {
		c, _, resp := connectQuiet(t, exit, dests[i%2], "127.0.0."+fmt.Sprint(2+i%4))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("tunnel %d: %s (%s)", i, resp.Status, resp.Header.Get(exitnode.HeaderError))
		}
		_ = c.Close()
	}
	d := time.Since(start)
	t.Logf("%d tunnels in %v (%.0f/s)", count, d, count/d.Seconds())
	waitFor(t, func() bool { return s.ActiveTunnels() == 0 }, "all tunnels released")
}

// connectQuiet is connect without per-connection t.Cleanup, for loops.
func connectQuiet(t testing.TB, exit, target, egress string) (net.Conn, []byte, *http.Response) {
	t.Helper()
	c, err := net.DialTimeout("tcp", exit, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: Bearer " + testToken +
		"\r\nX-Farmgate-Egress: " + egress + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufioReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c, nil, resp
}

// TestNetnsBindNoPortHolds runs TestNetnsChildBindNoPort in a fresh network
// namespace whose ephemeral port range is cut to 300 ports: without
// IP_BIND_ADDRESS_NO_PORT binding the egress IP fails once those ports sit in
// TIME_WAIT; with it, three times as many connections succeed.
func TestNetnsBindNoPortHolds(t *testing.T) {
	t.Parallel()
	runInNetns(t, "TestNetnsChildBindNoPort")
}

func TestNetnsChildBindNoPort(t *testing.T) {
	if !inNetnsChild(t) {
		return
	}
	dests := sinks(t, 8) // before narrowing the range, so they hold none of its ports
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("40000 40299"), 0o644); err != nil {
		t.Fatalf("narrow the port range: %v", err)
	}
	// With the option: 900 connections over 300 ports (4-tuples differ by
	// destination, so the kernel reuses source ports at connect time).
	// This runs first: sockets bound without the option would hold their
	// ports against connect-time selection.
	n, err := churn(netip.MustParseAddr("127.0.0.8"), dests, 900, true)
	if err != nil {
		t.Fatalf("with IP_BIND_ADDRESS_NO_PORT: dial %d failed: %v", n+1, err)
	}
	// Without it, from another egress IP: exhaustion, as the issue says.
	n, err = churn(netip.MustParseAddr("127.0.0.7"), dests, 900, false)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("without IP_BIND_ADDRESS_NO_PORT: %d dials, err %v; want EADDRINUSE before 900", n, err)
	}
	t.Logf("without IP_BIND_ADDRESS_NO_PORT: port exhaustion after %d connections: %v", n, err)
}
