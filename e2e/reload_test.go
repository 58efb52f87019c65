package e2e

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// SIGHUP reloads customers without dropping tunnels; a bad reload keeps the
// old configuration and says which field is wrong.
func TestSighupReloadsCustomersLive(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	needCurl(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("reload-token"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	write := func(s string) {
		tmp := customers + ".tmp"
		os.WriteFile(tmp, []byte(s), 0o600)
		os.Rename(tmp, customers)
	}
	write("customers:\n  - user: demo\n    password: demo\n    pools: [resi]\n  - user: gone\n    password: demo\n    pools: [resi]\n")
	origin := startDemoOrigin(t)
	echo := echoServer(t)

	exitA, exitB, gw := freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, links.tls("exit", "--listen", exitA, "--id", "r-resi", "--pool", "resi", "--egress", "127.0.21.1", "--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	start(t, links.tls("exit", "--listen", exitB, "--id", "r-dc", "--pool", "dc", "--egress", "127.0.22.1", "--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	g := start(t, links.tls("gateway", "--listen", gw, "--admin", "", "--customers", customers, "--token-file", token,
		"--exit", "r-resi="+exitA, "--exit", "r-dc="+exitB)...)
	waitListening(t, gw)
	get := func(user string) curlResult {
		return curl(t, "http://"+user+":demo@"+gw, "http://"+origin.HTTPAddr+"/ip")
	}
	deadline := time.Now().Add(10 * time.Second)
	for get("demo").status != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("gateway never served; log:\n%s", g.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r := get("demo-zone-dc"); r.status != 403 {
		t.Fatalf("zone dc before reload: %d, want 403", r.status)
	}
	// A live tunnel must survive the reloads, unless its customer is gone.
	f := &demo.Farm{GatewayAddr: gw}
	live, br := dialTunnel(t, f, "demo", echo, "")
	doomed, doomedR := dialTunnel(t, f, "gone", echo, "")

	write("customers:\n  - user: demo\n    password: demo\n    pools: [resi, dc]\n")
	g.cmd.Process.Signal(syscall.SIGHUP)
	doomed.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := doomedR.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the tunnel of a customer the reload removed is still open (read %d, %v); log:\n%s", n, err, g.output())
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		r := get("demo-zone-dc")
		if r.status == 200 && strings.HasPrefix(strings.TrimSpace(r.body), "127.0.22.") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("zone dc after reload: %d; log:\n%s", r.status, g.output())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A broken file: the old customers stay, the log names the field.
	write("customers:\n  - user: demo\n    password: demo\n    pools: []\n")
	g.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(g.output(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload error logged; log:\n%s", g.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(g.output(), "pools") {
		t.Errorf("the reload error does not name the field:\n%s", g.output())
	}
	if r := get("demo-zone-dc"); r.status != 200 {
		t.Errorf("after a bad reload: %d, want the old customers (200)", r.status)
	}
	if _, err := live.Write([]byte("still\n")); err != nil {
		t.Fatal(err)
	}
	live.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || line != "still\n" {
		t.Fatalf("tunnel across reloads: %q %v", line, err)
	}
}

// A reload replaces only what the files define: exits found over gossip
// stay in rotation through SIGHUP, while an --exit the new configuration
// drops leaves it.
func TestSighupKeepsGossipExits(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	needCurl(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("reload-gossip-token"), 0o600)
	keyFile := filepath.Join(dir, "gossip.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))+"\n"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)
	origin := startDemoOrigin(t)

	gwGossip, gw, adminAddr, staticExit := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, links.tls("exit", "--listen", staticExit, "--id", "rs-static", "--pool", "resi", "--egress", "127.0.61.1",
		"--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	// The configuration file names the static exit; the reload drops it.
	config := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(config, []byte("exit: [rs-static="+staticExit+"]\n"), 0o600)
	g := start(t, links.tls("gateway", "--config", config, "--listen", gw, "--admin", adminAddr, "--customers", customers,
		"--token-file", token, "--gossip-listen", gwGossip, "--gossip-key-file", keyFile)...)
	waitListening(t, gw)
	for i, id := range []string{"rs-g1", "rs-g2"} {
		start(t, links.tls("exit", "--listen", freeAddr(t), "--id", id, "--pool", "resi", "--egress", fmt.Sprintf("127.0.%d.1", 62+i),
			"--token-file", token, "--allow-dest", "127.0.0.0/8",
			"--gossip-listen", freeAddr(t), "--join", gwGossip, "--gossip-key-file", keyFile)...)
	}
	exits := func() map[string]bool {
		out := map[string]bool{}
		for id := range apiExits(t, "http://"+adminAddr) {
			out[id] = true
		}
		return out
	}
	waitFor(t, 20*time.Second, "three exits in /api/exits", func() error {
		if e := exits(); len(e) != 3 {
			return fmt.Errorf("exits %v", e)
		}
		return nil
	})

	os.WriteFile(config, []byte("{}\n"), 0o600)
	g.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the reload", func() error {
		if !strings.Contains(g.output(), "configuration reloaded") {
			return errors.New("not logged yet")
		}
		return nil
	})
	if e := exits(); len(e) != 2 || !e["rs-g1"] || !e["rs-g2"] {
		t.Fatalf("after SIGHUP /api/exits lists %v, want the two gossip exits; log:\n%s", e, g.output())
	}
	served := 0
	for i := range 10 {
		r := curl(t, "http://demo:demo@"+gw, "http://"+origin.HTTPAddr+"/ip", "-m", "5")
		if r.status == 200 {
			served++
		} else {
			t.Logf("request %d after reload: %d %s", i, r.status, r.header.Get("X-Farmgate-Error"))
		}
	}
	if served != 10 {
		t.Fatalf("%d of 10 requests served after the reload; log:\n%s", served, g.output())
	}
}
