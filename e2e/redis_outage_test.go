package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

func farmgateCmd(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, farmgateBin(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("farmgate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func usageDown(t *testing.T, redisURL, user string) int64 {
	t.Helper()
	out := farmgateCmd(t, "", "customers", "usage", user, "--redis-url", redisURL, "--json")
	var rep struct {
		ThisMonth struct {
			Down int64 `json:"down"`
		} `json:"this_month"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("usage output %q: %v", out, err)
	}
	return rep.ThisMonth.Down
}

// The operator's Redis deployment: customers managed with the CLI, a
// gateway that loses no usage on SIGTERM, and one that rides out a Redis
// outage: verified customers keep working, new ones get 503, and usage
// counted during the outage reaches Redis when it is back.
func TestRedisGatewaySigtermAndOutage(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	needCurl(t)
	rproc := redistest.Start(t)
	raddr := rproc.Addr()
	redisURL := "redis://" + raddr + "/0"
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("redis-e2e-token"), 0o600)
	farmgateCmd(t, "alicepw\n", "customers", "add", "alice", "--pools", "resi", "--password-stdin", "--redis-url", redisURL)
	farmgateCmd(t, "bobpw\n", "customers", "add", "bob", "--pools", "resi", "--password-stdin", "--redis-url", redisURL)
	origin := startDemoOrigin(t)
	exitAddr := freeAddr(t)
	start(t, links.tls("exit", "--listen", exitAddr, "--id", "x1", "--pool", "resi", "--egress", "127.0.31.1", "--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	startGW := func() (*process, string) {
		gw := freeAddr(t)
		g := start(t, links.tls("gateway", "--listen", gw, "--admin", "", "--redis-url", redisURL, "--token-file", token, "--exit", "x1="+exitAddr)...)
		waitListening(t, gw)
		deadline := time.Now().Add(10 * time.Second)
		for curl(t, "http://alice:alicepw@"+gw, "http://"+origin.HTTPAddr+"/ip").status != 200 {
			if time.Now().After(deadline) {
				t.Fatalf("gateway never served; log:\n%s", g.output())
			}
			time.Sleep(100 * time.Millisecond)
		}
		return g, gw
	}
	download := func(gw, user string, n int) {
		t.Helper()
		r := curl(t, "http://"+user+"@"+gw, fmt.Sprintf("http://%s/bytes?n=%d", origin.HTTPAddr, n))
		if r.status != 200 || len(r.body) != n {
			t.Fatalf("download as %s: %d, %d bytes (%s)", user, r.status, len(r.body), r.all.Get("X-Farmgate-Error"))
		}
	}

	// SIGTERM right after traffic: nothing counted is lost.
	g, gw := startGW()
	before := usageDown(t, redisURL, "alice")
	for range 3 {
		download(gw, "alice:alicepw", 200_000)
	}
	g.cmd.Process.Signal(syscall.SIGTERM)
	if err := g.cmd.Wait(); err != nil {
		t.Fatalf("gateway exit after SIGTERM: %v\n%s", err, g.output())
	}
	if got := usageDown(t, redisURL, "alice") - before; got < 600_000 {
		t.Fatalf("usage after SIGTERM grew by %d, want ≥ 600000", got)
	}

	// A Redis outage (the server stopped, then resumed).
	g, gw = startGW()
	before = usageDown(t, redisURL, "alice")
	rproc.Signal(syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			rproc.Signal(syscall.SIGCONT)
		}
	}()
	for range 3 {
		download(gw, "alice:alicepw", 100_000) // verified before: fail-static
	}
	r := curl(t, "http://bob:bobpw@"+gw, "http://"+origin.HTTPAddr+"/ip")
	if r.status != 503 || r.all.Get("X-Farmgate-Error") != "auth_unavailable" {
		t.Errorf("a customer not verified before, during the outage: %d %q, want 503 auth_unavailable", r.status, r.all.Get("X-Farmgate-Error"))
	}
	rproc.Signal(syscall.SIGCONT)
	stopped = false
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := usageDown(t, redisURL, "alice") - before
		if got >= 300_000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage counted during the outage: %d of 300000 reached Redis; log:\n%s", got, g.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := strings.Count(g.output(), "unavailable") + strings.Count(g.output(), "outage"); n > 6 {
		t.Errorf("the outage was logged %d times; want once when it starts and once when it ends per store:\n%s", n, g.output())
	}
	// And new customers work again, once the breaker's probe (every half
	// second) has seen Redis answer.
	deadline = time.Now().Add(10 * time.Second)
	for {
		r := curl(t, "http://bob:bobpw@"+gw, "http://"+origin.HTTPAddr+"/ip")
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new customer after the outage: %d %s; log:\n%s", r.status, r.all.Get("X-Farmgate-Error"), g.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
