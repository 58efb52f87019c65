package exitnode_test

import (
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
)

// TestNetnsPolicyDials dials denied destinations through a real exit in a
// network namespace that has only loopback, where those addresses are
// assigned to lo and have listeners: the exit must refuse them (403) and the
// listeners must see no connection, while an exit that allows them reaches
// them (so the refusal is the policy, not the routing).
func TestNetnsPolicyDials(t *testing.T) {
	t.Parallel()
	runInNetns(t, "TestNetnsChildPolicy")
}

func TestNetnsChildPolicy(t *testing.T) {
	if !inNetnsChild(t) {
		return
	}
	denied := []string{"10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "198.18.0.1", "127.0.0.1"}
	for _, a := range denied {
		if a != "127.0.0.1" {
			ipCmd(t, "addr", "add", a+"/32", "dev", "lo")
		}
	}
	type target struct {
		name string
		addr string // host:port as sent in CONNECT
		echo *echoServer
	}
	var targets []target
	names := map[string][]netip.Addr{}
	for _, a := range denied {
		e := startEchoOn(t, a+":0")
		_, port, _ := net.SplitHostPort(e.addr())
		targets = append(targets,
			target{"literal " + a, e.addr(), e},
			target{"mapped " + a, net.JoinHostPort("::ffff:"+a, port), e},
			target{"name " + a, "n" + a + ".test:" + port, e})
		names["n"+a+".test"] = []netip.Addr{netip.MustParseAddr(a)}
	}
	resolver := startDNS(t, names)

	cfg := testConfig()
	cfg.Egress = nil
	cfg.AllowDest = nil // production policy: nothing private allowed
	cfg.Resolver = resolver
	_, exit := startExit(t, cfg)

	for _, tc := range targets {
		_, _, resp := connect(t, exit, tc.addr, authHeader(), nil)
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get(exitnode.HeaderError) != "destination_forbidden" {
			t.Errorf("CONNECT %s (%s): %s %q, want 403 destination_forbidden", tc.addr, tc.name, resp.Status, resp.Header.Get(exitnode.HeaderError))
		}
		hresp, err := proxyClient(t, exit, authHeader()).Get("http://" + tc.addr + "/")
		if err != nil {
			t.Fatalf("GET %s: %v", tc.addr, err)
		}
		hresp.Body.Close()
		if hresp.StatusCode != http.StatusForbidden || hresp.Header.Get(exitnode.HeaderError) != "destination_forbidden" {
			t.Errorf("GET %s (%s): %s, want 403 destination_forbidden", tc.addr, tc.name, hresp.Status)
		}
	}
	for _, tc := range targets {
		select {
		case p := <-tc.echo.peers:
			t.Errorf("denied destination %s was reached from %s", tc.echo.addr(), p)
		default:
		}
	}

	// Control: an exit allowing these ranges reaches every listener.
	cfg.AllowDest = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
	_, open := startExit(t, cfg)
	for _, tc := range targets {
		c, _, resp := connect(t, open, tc.addr, authHeader(), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("control CONNECT %s: %s", tc.addr, resp.Status)
		}
		c.Close()
		select {
		case <-tc.echo.peers:
		case <-time.After(2 * time.Second):
			t.Fatalf("control: %s not reached", tc.addr)
		}
	}
}
