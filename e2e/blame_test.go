package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/exitnode"
)

// slowOrigin answers after 5 s, or not at all if its client leaves first.
func slowOrigin(t *testing.T) *httptest.Server {
	t.Helper()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
			_, _ = io.WriteString(w, "late")
		}
	}))
	t.Cleanup(origin.Close)
	return origin
}

// checkNotEjected fails unless exit id is healthy and was never ejected.
func checkNotEjected(t *testing.T, f *demo.Farm, id string) {
	t.Helper()
	for _, e := range f.Pool.Exits() {
		if e.ID == id && (e.State != "healthy" || e.Ejections != 0) {
			t.Errorf("%s is %s (%s), %d ejections; want healthy, never ejected", id, e.State, e.Reason, e.Ejections)
		}
	}
}

// Customers who give up on a slow site before it answers say nothing about
// the exit: passive health must not count them as its failures (five in a
// row ejected eu-1 for 30 s).
func TestCustomersGivingUpDoNotEjectTheExit(t *testing.T) {
	t.Parallel()
	origin := slowOrigin(t)
	f := startFarm(t, nil)
	host := strings.TrimPrefix(origin.URL, "http://")
	auth := "Proxy-Authorization: Basic ZGVtby1jb3VudHJ5LWRlOmRlbW8=\r\n" // demo-country-de:demo, so eu-1
	for i := range 12 {
		conn, err := net.Dial("tcp", f.GatewayAddr)
		if err != nil {
			t.Fatal(err)
		}
		head := "GET " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\n" + auth + "\r\n"
		if i%2 == 1 {
			head = "POST " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\n" + auth + "Content-Length: 3\r\n\r\nabc"
		}
		if _, err := io.WriteString(conn, head); err != nil {
			t.Fatal(err)
		}
		// The customer gives up once the exit is at work.
		waitFor(t, 10*time.Second, "the request at the exit", func() error {
			if activeTunnels(f) == 0 {
				return errors.New("no exit counts it")
			}
			return nil
		})
		conn.Close()
		waitFor(t, 10*time.Second, "the gateway done with it", func() error {
			if n := activeTunnels(f); n != 0 {
				return fmt.Errorf("%d active", n)
			}
			return nil
		})
	}
	checkNotEjected(t, f, "eu-1")
	// Nor are they failures on the operator's dashboard.
	if failed := gathered(t, f, "farmgate_tunnels_failed_total", "reason"); len(failed) != 0 {
		t.Errorf("farmgate_tunnels_failed_total by reason: %v, want none", failed)
	}
}

// A destination slower than the exit's DialTimeout, which also bounds the
// wait for a forwarded request's answer, gets the customer 504
// destination_timeout from the exit, before the gateway's own wait ends and
// blames the exit.
func TestSlowDestinationDoesNotEjectTheExit(t *testing.T) {
	t.Parallel()
	origin := slowOrigin(t)
	f := startFarm(t, func(c *demo.Config) {
		c.Exit = func(e *exitnode.Config) { e.DialTimeout = 300 * time.Millisecond }
		c.Gateway.ExitReplyTimeout = 3 * time.Second
	})
	url := origin.URL + "/slow"
	for i := range 6 {
		var r curlResult
		if i%2 == 0 {
			r = curl(t, proxyURL(f, "demo-country-de"), url)
		} else {
			r = curl(t, proxyURL(f, "demo-country-de"), url, "--data-binary", "abc")
		}
		if r.status != http.StatusGatewayTimeout || r.all.Get("X-Farmgate-Error") != "destination_timeout" {
			t.Fatalf("request %d: %d %q, want 504 destination_timeout", i, r.status, r.all.Get("X-Farmgate-Error"))
		}
	}
	checkNotEjected(t, f, "eu-1")
}
