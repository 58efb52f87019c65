package e2e

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// The operator's gossip farm: exits started with --join appear at the
// gateway with no --exit list; a SIGKILLed exit leaves every pool; a
// SIGTERMed exit drains (no live tunnel cut, no new ones) and then leaves.
func TestGossipFarmFromTheCommandLine(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	needCurl(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("gossip-e2e-token"), 0o600)
	keyFile := filepath.Join(dir, "gossip.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))+"\n"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)
	origin := startDemoOrigin(t)
	echo := echoServer(t)

	gwGossip, gw, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	g := start(t, links.tls("gateway", "--listen", gw, "--admin", adminAddr, "--dc", "eu", "--customers", customers, "--token-file", token,
		"--gossip-listen", gwGossip, "--gossip-key-file", keyFile, "--probe-url", "http://"+origin.HTTPAddr+"/ip")...)
	waitListening(t, gw)
	exits := map[string]*process{}
	for i, id := range []string{"g1", "g2", "g3"} {
		exits[id] = start(t, links.tls("exit", "--listen", freeAddr(t), "--id", id, "--dc", "eu", "--pool", "resi", "--country", "de",
			"--egress", fmt.Sprintf("127.0.%d.1", 50+i), "--token-file", token, "--allow-dest", "127.0.0.0/8",
			"--gossip-listen", freeAddr(t), "--join", gwGossip, "--gossip-key-file", keyFile, "--drain-timeout", "20s")...)
	}
	// Sticky sessions spread by rendezvous hashing, whatever the policy
	// prefers: 40 sessions see every exit in rotation.
	round := 0
	seen := func() map[string]bool {
		out := map[string]bool{}
		round++
		for i := range 40 {
			r := curl(t, fmt.Sprintf("http://demo-session-r%dn%d:demo@%s", round, i, gw), "http://"+origin.HTTPAddr+"/ip")
			if r.status == 200 {
				out[r.header.Get("X-Farmgate-Exit")] = true
			}
		}
		return out
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(seen()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not find 3 exits over gossip; log:\n%s", g.output())
		}
		time.Sleep(200 * time.Millisecond)
	}

	// SIGKILL g1: it leaves rotation.
	killed := time.Now()
	exits["g1"].cmd.Process.Signal(syscall.SIGKILL)
	exits["g1"].cmd.Wait()
	for {
		s := seen()
		if !s["g1"] && len(s) == 2 {
			t.Logf("g1 out of rotation %s after SIGKILL", time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Since(killed) > 15*time.Second {
			t.Fatalf("g1 still used 15s after SIGKILL: %v", s)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// SIGTERM g2 with a live tunnel through it: it drains, the tunnel lives.
	var live *tunnelConn
	for i := range 50 {
		c, br := dialTunnel(t, &demo.Farm{GatewayAddr: gw}, fmt.Sprintf("demo-session-live%d", i), echo, "")
		if exitOf(t, c) == "g2" {
			live = &tunnelConn{c, br}
			break
		}
		c.Close()
	}
	if live == nil {
		t.Fatal("no tunnel landed on g2")
	}
	exits["g2"].cmd.Process.Signal(syscall.SIGTERM)
	deadline = time.Now().Add(10 * time.Second)
	for {
		if s := seen(); !s["g2"] && s["g3"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("g2 still gets new tunnels 10s after SIGTERM; exit log:\n%s", exits["g2"].output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := live.c.Write([]byte("through the drain\n")); err != nil {
		t.Fatal(err)
	}
	live.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := live.br.ReadString('\n'); err != nil || line != "through the drain\n" {
		t.Fatalf("live tunnel during the drain: %q %v", line, err)
	}
	live.c.Close()
	done := make(chan error, 1)
	go func() { done <- exits["g2"].cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("g2 exit status after drain: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("g2 did not stop once its last tunnel closed; log:\n%s", exits["g2"].output())
	}
	if !strings.Contains(exits["g2"].output(), "exit stopped") {
		t.Errorf("g2 log:\n%s", exits["g2"].output())
	}
}
