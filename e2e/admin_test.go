package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/gateway/admin"
)

func TestAdminExitsAndDrain(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	srv := httptest.NewServer(admin.Handler(admin.Config{Pool: f.Pool, Gatherer: f.Metrics}))
	t.Cleanup(srv.Close)

	getExits := func() map[string]map[string]any {
		t.Helper()
		resp, err := http.Get(srv.URL + "/api/exits")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatal(err)
		}
		out := map[string]map[string]any{}
		for _, e := range list {
			out[e["id"].(string)] = e
		}
		return out
	}
	exits := getExits()
	if len(exits) != 4 {
		t.Fatalf("/api/exits lists %d exits, want 4", len(exits))
	}
	for _, field := range []string{"id", "dc", "pool", "country", "state", "active_tunnels", "latency_ms", "ejections"} {
		if _, ok := exits["eu-1"][field]; !ok {
			t.Errorf("exit object has no %q: %v", field, exits["eu-1"])
		}
	}
	if exits["us-2"]["pool"] != "dc" || exits["eu-2"]["country"] != "FR" || exits["us-1"]["dc"] != "us" {
		t.Errorf("metadata wrong: %v", exits)
	}

	// Drain eu-1: the customers of pool resi in DC eu all land on eu-2.
	resp, err := http.Post(srv.URL+"/api/exits/eu-1/drain", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain: %v %v", resp, err)
	}
	if st := getExits()["eu-1"]["state"]; st != "draining" {
		t.Fatalf("eu-1 state %v after drain", st)
	}
	for range 10 {
		r := curl(t, proxyURL(f, "demo"), "http://"+f.Origin.HTTPAddr+"/ip")
		if got := r.header.Get("X-Farmgate-Exit"); r.status != 200 || got != "eu-2" {
			t.Fatalf("while eu-1 drains: status %d via %q, want eu-2", r.status, got)
		}
	}
	resp, _ = http.Post(srv.URL+"/api/exits/eu-1/undrain", "", nil)
	if resp.StatusCode != 200 || getExits()["eu-1"]["state"] != "healthy" {
		t.Fatalf("undrain: %d %v", resp.StatusCode, getExits()["eu-1"]["state"])
	}
	resp, _ = http.Post(srv.URL+"/api/exits/nope/drain", "", nil)
	if resp.StatusCode != 404 {
		t.Errorf("drain of an unknown exit: %d, want 404", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + "/healthz")
	if b := new(strings.Builder); resp.StatusCode != 200 {
		t.Errorf("/healthz %d %s", resp.StatusCode, b)
	}
}

// /api/customers lists accounts, never their passwords or argon2 hashes.
func TestAdminCustomersCarryNoSecrets(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("admin-secrets-token"), 0o600)
	hash, err := auth.HashPassword("hashed-secret")
	if err != nil {
		t.Fatal(err)
	}
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte("customers:\n"+
		"  - user: plain\n    password: plain-secret\n    pools: [resi]\n"+
		"  - user: hashed\n    password_hash: '"+hash+"'\n    pools: [resi]\n"), 0o600)
	gw, adminAddr := freeAddr(t), freeAddr(t)
	g := start(t, links.tls("gateway", "--listen", gw, "--admin", adminAddr, "--customers", customers, "--token-file", token,
		"--exit", "a1="+freeAddr(t))...)
	waitListening(t, adminAddr)
	resp, err := http.Get("http://" + adminAddr + "/api/customers")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/api/customers: %d %s; log:\n%s", resp.StatusCode, body, g.output())
	}
	var list []map[string]any
	if err := json.Unmarshal(body, &list); err != nil || len(list) != 2 {
		t.Fatalf("/api/customers: %v, %s", err, body)
	}
	for _, secret := range []string{"plain-secret", "$argon2", "password"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("/api/customers carries %q:\n%s", secret, body)
		}
	}
}

// /readyz answers 200 only while a customer could be served: not before an
// exit is known, and not while the gateway drains.
func TestReadyzFollowsTheFarm(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("readyz-token"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)
	gw, adminAddr, exitAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	g := start(t, links.tls("gateway", "--listen", gw, "--admin", adminAddr, "--customers", customers, "--token-file", token,
		"--exit", "rz-1="+exitAddr, "--drain-timeout", "30s")...)
	waitListening(t, adminAddr)
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	if status, body := readyz(); status != 503 || !strings.Contains(body, "no exit") {
		t.Fatalf("/readyz with its only exit not started: %d %q", status, body)
	}
	startExit := func() *process {
		return start(t, links.tls("exit", "--listen", exitAddr, "--id", "rz-1", "--pool", "resi", "--egress", "127.0.71.1",
			"--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	}
	readyAgain := func(what string) {
		waitFor(t, 20*time.Second, "/readyz 200 "+what, func() error {
			if status, body := readyz(); status != 200 {
				return fmt.Errorf("%d %q", status, body)
			}
			return nil
		})
	}
	x := startExit()
	readyAgain("once the exit answers")
	// Its only exit dead: not ready, and the health checks say so.
	x.cmd.Process.Kill()
	x.cmd.Wait()
	waitFor(t, 20*time.Second, "/readyz 503 with the only exit dead", func() error {
		if status, body := readyz(); status != 503 || !strings.Contains(body, "no healthy exit (1 down)") {
			return fmt.Errorf("%d %q", status, body)
		}
		return nil
	})
	startExit()
	readyAgain("once the exit is back")
	// A live tunnel holds the drain open while /readyz is asked.
	echo := echoServer(t)
	c, _ := dialTunnel(t, &demo.Farm{GatewayAddr: gw}, "demo", echo, "")
	defer c.Close()
	g.cmd.Process.Signal(syscall.SIGTERM)
	waitFor(t, 10*time.Second, "/readyz 503 while draining", func() error {
		if status, body := readyz(); status != 503 || !strings.Contains(body, "draining") {
			return fmt.Errorf("%d %q", status, body)
		}
		return nil
	})
}
