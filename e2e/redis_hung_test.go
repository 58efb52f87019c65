package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

// settledUsage returns user's download usage in Redis once it has not
// changed for longer than the gateway's flush interval (1s).
func settledUsage(t *testing.T, redisURL, user string) int64 {
	t.Helper()
	last, since := usageDown(t, redisURL, user), time.Now()
	deadline := time.Now().Add(20 * time.Second)
	for time.Since(since) < 1500*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("usage of %s still changing after 20s", user)
		}
		time.Sleep(100 * time.Millisecond)
		if u := usageDown(t, redisURL, user); u != last {
			last, since = u, time.Now()
		}
	}
	return last
}

// A Redis that hangs (stopped, so connections open and nothing answers)
// rather than refuses: a verified customer's requests go on at normal
// speed once the first Redis call has timed out, not one Redis timeout
// each, and the usage counted meanwhile reaches Redis when it answers
// again. The customer has limits, a quota and a sticky session, so
// credentials, limits, usage and sessions all meet the hung Redis.
func TestHungRedisFailsFast(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	needCurl(t)
	farmgateBin(t) // built before the CLI's deadline starts
	rproc := redistest.Start(t)
	redisURL := "redis://" + rproc.Addr() + "/0"
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("hung-redis-token"), 0o600)
	farmgateCmd(t, "alicepw\n", "customers", "add", "alice", "--pools", "resi", "--max-conns", "50",
		"--rate", "100", "--quota", "1000000000", "--password-stdin", "--redis-url", redisURL)
	origin := startDemoOrigin(t)
	exitAddr := freeAddr(t)
	start(t, links.tls("exit", "--listen", exitAddr, "--id", "x1", "--pool", "resi", "--egress", "127.0.32.1", "--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	gw := freeAddr(t)
	g := start(t, links.tls("gateway", "--listen", gw, "--admin", "", "--redis-url", redisURL, "--token-file", token, "--exit", "x1="+exitAddr)...)
	waitListening(t, gw)
	proxy := "http://alice-session-hung1:alicepw@" + gw
	const n = 50_000
	url := fmt.Sprintf("http://%s/bytes?n=%d", origin.HTTPAddr, n)
	deadline := time.Now().Add(15 * time.Second)
	for curl(t, proxy, url).status != 200 { // verified, session bound
		if time.Now().After(deadline) {
			t.Fatalf("gateway never served; log:\n%s", g.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := settledUsage(t, redisURL, "alice")
	if r := curl(t, proxy, url); r.status != 200 {
		t.Fatalf("second request: %d %q", r.status, r.all.Get("X-Farmgate-Error"))
	}
	after := settledUsage(t, redisURL, "alice")
	per := after - before // what one request counts: the body and the response head
	if per < n {
		t.Fatalf("one request of %d bytes counted %d", n, per)
	}

	rproc.Signal(syscall.SIGSTOP)
	stopped := true
	t.Cleanup(func() {
		if stopped {
			rproc.Signal(syscall.SIGCONT)
		}
	})
	const requests = 12
	took := make([]time.Duration, requests)
	for i := range took {
		t0 := time.Now()
		r := curl(t, proxy, url)
		took[i] = time.Since(t0)
		if r.status != 200 || len(r.body) != n {
			t.Fatalf("request %d with Redis hung: %d %q, %d bytes after %v; log:\n%s",
				i+1, r.status, r.all.Get("X-Farmgate-Error"), len(r.body), took[i], g.output())
		}
	}
	worst := time.Duration(0)
	for _, d := range took[1:] {
		worst = max(worst, d)
	}
	t.Logf("Redis hung: first request %v, worst of the %d after it %v (all: %v)", took[0].Round(time.Millisecond),
		requests-1, worst.Round(time.Millisecond), took)
	// The target is normal speed (tens of ms); 1s leaves room for a busy
	// machine and is still far below one Redis timeout per request.
	for i, d := range took[1:] {
		if d > time.Second {
			t.Errorf("request %d took %v with Redis hung; want < 1s after the first", i+2, d)
		}
	}

	rproc.Signal(syscall.SIGCONT)
	stopped = false
	want := requests * per
	deadline = time.Now().Add(20 * time.Second)
	for {
		got := usageDown(t, redisURL, "alice") - after
		if got >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage counted while Redis hung: %d of %d bytes reached Redis; log:\n%s", got, want, g.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Flushes that timed out while Redis was stopped ran when it resumed;
	// their retries must not count again.
	if got := settledUsage(t, redisURL, "alice") - after; got != want {
		t.Errorf("usage counted while Redis hung: Redis holds %d bytes, want %d (%+d)", got, want, got-want)
	}
	// And Redis is used again: the breaker closed.
	if r := curl(t, proxy, url); r.status != 200 {
		t.Fatalf("after Redis resumed: %d %q", r.status, r.all.Get("X-Farmgate-Error"))
	}
}

// Usage written to Redis just as it hangs is counted once: the flush sits
// in Redis's socket, times out, and runs when Redis resumes; the gateway
// sends the same batch again after that, and Redis must skip it.
func TestHungRedisUsageCountedOnce(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	needCurl(t)
	farmgateBin(t)
	rproc := redistest.Start(t)
	redisURL := "redis://" + rproc.Addr() + "/0"
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("hung-redis-token"), 0o600)
	// No limits, no session: the usage flush is the gateway's only Redis
	// call, so it is the one that meets Redis hung.
	farmgateCmd(t, "bobpw\n", "customers", "add", "bob", "--pools", "resi", "--password-stdin", "--redis-url", redisURL)
	origin := startDemoOrigin(t)
	exitAddr := freeAddr(t)
	start(t, links.tls("exit", "--listen", exitAddr, "--id", "x1", "--pool", "resi", "--egress", "127.0.33.1", "--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	gw := freeAddr(t)
	g := start(t, links.tls("gateway", "--listen", gw, "--admin", "", "--redis-url", redisURL, "--token-file", token, "--exit", "x1="+exitAddr)...)
	waitListening(t, gw)
	proxy := "http://bob:bobpw@" + gw
	deadline := time.Now().Add(15 * time.Second)
	for curl(t, proxy, "http://"+origin.HTTPAddr+"/ip").status != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("gateway never served; log:\n%s", g.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := settledUsage(t, redisURL, "bob")

	// A download slow enough that usage is flushed every second while it
	// runs, across the time Redis hangs.
	const n = 24 << 20
	done := make(chan curlResult, 1)
	go func() {
		done <- curl(t, proxy, fmt.Sprintf("http://%s/bytes?n=%d", origin.HTTPAddr, n), "--limit-rate", "2M")
	}()
	deadline = time.Now().Add(15 * time.Second)
	for usageDown(t, redisURL, "bob") == before {
		if time.Now().After(deadline) {
			t.Fatalf("the download's usage never reached Redis; log:\n%s", g.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	rproc.Signal(syscall.SIGSTOP)
	stopped := true
	t.Cleanup(func() {
		if stopped {
			rproc.Signal(syscall.SIGCONT)
		}
	})
	// The flush under way timed out: its batch is in doubt.
	deadline = time.Now().Add(15 * time.Second)
	for !strings.Contains(g.output(), "redis not answering") {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never saw Redis hang; log:\n%s", g.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	rproc.Signal(syscall.SIGCONT)
	stopped = false
	r := <-done
	if r.status != 200 || len(r.body) != n {
		t.Fatalf("download across the hang: %d %q, %d of %d bytes", r.status, r.all.Get("X-Farmgate-Error"), len(r.body), n)
	}
	deadline = time.Now().Add(20 * time.Second)
	for usageDown(t, redisURL, "bob")-before < n {
		if time.Now().After(deadline) {
			t.Fatalf("usage of the download: %d of %d bytes reached Redis; log:\n%s", usageDown(t, redisURL, "bob")-before, n, g.output())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Billed down is the body and the answer's head (README, "What is
	// billed"); a batch applied twice would add megabytes.
	const maxHead = 4 << 10
	if got := settledUsage(t, redisURL, "bob") - before; got < n || got > n+maxHead {
		t.Errorf("Redis holds %d bytes of a %d-byte download (%+d), want the download and its head once; log:\n%s", got, n, got-n, g.output())
	}
}
