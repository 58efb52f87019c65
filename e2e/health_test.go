package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/static"
)

// procFarm is a gateway in this process in front of exits that are real
// farmgate processes, so one can be SIGKILLed.
type procFarm struct {
	gw     *gateway.Gateway
	pool   *pool.Pool
	gwAddr string
	token  string
	exits  map[string]*exec.Cmd
	addrs  map[string]string
	args   map[string][]string
	mu     sync.Mutex
	t      testing.TB
}

func startProcFarm(t *testing.T, ids []string, probeURL string) *procFarm {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("proc-farm-token"), 0o600)
	f := &procFarm{token: "proc-farm-token", exits: map[string]*exec.Cmd{}, addrs: map[string]string{}, args: map[string][]string{}, t: t}
	var named []static.Exit
	for i, id := range ids {
		addr := freeAddr(t)
		f.addrs[id] = addr
		f.args[id] = []string{"exit", "--insecure-links", "--listen", addr, "--id", id, "--dc", "eu", "--pool", "resi", "--country", "de",
			"--egress", fmt.Sprintf("127.0.%d.1,127.0.%d.2", 40+i, 40+i), "--token-file", tokenFile, "--allow-dest", "127.0.0.0/8"}
		f.startExit(id)
		named = append(named, static.Exit{ID: id, Addr: addr})
	}
	for _, id := range ids {
		waitListening(t, f.addrs[id])
	}
	pcfg := pool.DefaultConfig()
	pcfg.LocalDC = "eu"
	pcfg.Probe = func(ctx context.Context, e *pool.Exit) error { return f.gw.CheckExit(ctx, e, probeURL) }
	var err error
	if f.pool, err = pool.New(pcfg, nil); err != nil {
		t.Fatal(err)
	}
	store, err := auth.ParseFile([]byte("customers:\n  - user: demo\n    password: demo\n    pools: [resi]\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	gcfg := gateway.DefaultConfig()
	gcfg.ExitToken = f.token
	if f.gw, err = gateway.New(gcfg, store, f.pool, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	learnCtx, learnCancel := context.WithTimeout(ctx, 10*time.Second)
	static.Learn(learnCtx, f.pool, named, f.token, nil, discard())
	learnCancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.gwAddr = ln.Addr().String()
	wg.Add(2)
	go func() { defer wg.Done(); f.pool.Run(ctx) }()
	go func() { defer wg.Done(); f.gw.Serve(ln) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		f.gw.Shutdown(sctx)
		cancel()
		wg.Wait()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.exits {
			c.Process.Kill()
			c.Wait()
		}
	})
	return f
}

func (f *procFarm) startExit(id string) {
	cmd := exec.Command(farmgateBin(f.t), f.args[id]...)
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.exits[id] = cmd
	f.mu.Unlock()
}

func (f *procFarm) kill(id string) {
	f.mu.Lock()
	cmd := f.exits[id]
	f.mu.Unlock()
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

// tunnelOnce opens a CONNECT tunnel, exchanges a line with the echo server
// and closes. setupErr is a failure before the tunnel was up (what failover
// must hide); streamErr one after.
func tunnelOnce(gwAddr, user, target string) (exit string, setupErr, streamErr error) {
	c, err := net.DialTimeout("tcp", gwAddr, 5*time.Second)
	if err != nil {
		return "", err, nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cred := base64.StdEncoding.EncodeToString([]byte(user + ":demo"))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n", target, target, cred)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return "", err, nil
	}
	exit = resp.Header.Get("X-Farmgate-Exit")
	if resp.StatusCode != 200 {
		return exit, fmt.Errorf("CONNECT: %s %s", resp.Status, resp.Header.Get("X-Farmgate-Error")), nil
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return exit, nil, err
	}
	if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
		return exit, nil, fmt.Errorf("echo %q: %v", line, err)
	}
	return exit, nil, nil
}

type tunnelRecord struct {
	start     time.Time
	at        time.Time
	exit      string
	setupErr  error
	streamErr error
}

// SIGKILL an exit under load: no tunnel set-up fails, the dead exit gets no
// new tunnels within 6s, and once restarted it is back within 6s.
func TestDeadExitIsEvictedAndComesBack(t *testing.T) {
	if testing.Short() {
		t.Skip("takes ~20s of real time: the probes run at their real 2s cadence")
	}
	t.Parallel()
	echo := echoServer(t)
	origin := echoHTTP(t)
	f := startProcFarm(t, []string{"x1", "x2", "x3", "x4"}, "http://"+origin+"/")

	const customers = 32
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var mu sync.Mutex
	var records []tunnelRecord
	var wg sync.WaitGroup
	for range customers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				exit, se, st := tunnelOnce(f.gwAddr, "demo", echo)
				mu.Lock()
				records = append(records, tunnelRecord{start, time.Now(), exit, se, st})
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	// Watch when the gateway stops considering x2 (ejected or down).
	evicted := make(chan time.Time, 1)
	go func() {
		for ctx.Err() == nil {
			for _, e := range f.pool.Exits() {
				if e.ID == "x2" && e.State != pool.StateHealthy {
					evicted <- time.Now()
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second)
	killedAt := time.Now()
	f.kill("x2")
	deadAt := time.Now() // the process is reaped: nothing can reach it from here
	time.Sleep(9 * time.Second)
	restartedAt := time.Now()
	f.startExit("x2")
	time.Sleep(9 * time.Second)
	cancel()
	wg.Wait()

	var setupFails, streamCuts int
	var lastOnDead, firstBack time.Time
	for _, r := range records {
		if r.setupErr != nil {
			setupFails++
			t.Errorf("tunnel set-up failed at +%s after the kill: %v", r.at.Sub(killedAt).Round(time.Millisecond), r.setupErr)
		}
		if r.streamErr != nil {
			streamCuts++
			// Only a tunnel that was live through x2 when it died may be cut.
			if d := r.at.Sub(killedAt); d < 0 || d > time.Second {
				t.Errorf("tunnel cut at +%s from the kill: %v", d, r.streamErr)
			}
		}
		if r.exit == "x2" && r.streamErr == nil && r.setupErr == nil {
			if r.start.After(deadAt) && r.start.Before(restartedAt) && r.start.After(lastOnDead) {
				lastOnDead = r.start
			}
			if r.start.After(restartedAt) && (firstBack.IsZero() || r.at.Before(firstBack)) {
				firstBack = r.at
			}
		}
	}
	if !lastOnDead.IsZero() {
		t.Errorf("x2 served a tunnel started %s after it was dead", lastOnDead.Sub(deadAt))
	}
	if firstBack.IsZero() {
		t.Errorf("x2 got no tunnel in the 9s after its restart")
	} else if d := firstBack.Sub(restartedAt); d > 6*time.Second {
		t.Errorf("x2 back in rotation %s after restart, want ≤ 6s", d)
	} else {
		t.Logf("x2 back in rotation %s after its restart", d.Round(time.Millisecond))
	}
	select {
	case at := <-evicted:
		d := at.Sub(killedAt)
		t.Logf("x2 out of rotation %s after SIGKILL", d.Round(time.Millisecond))
		if d > 6*time.Second {
			t.Errorf("x2 still in rotation %s after it died, want ≤ 6s", d)
		}
	default:
		t.Errorf("x2 never left rotation after it died")
	}
	for _, e := range f.pool.Exits() {
		t.Logf("exit %s: state %s, ejections %d", e.ID, e.State, e.Ejections)
	}
	t.Logf("%d tunnels by %d customers, %d set-up failures, %d live tunnels cut by the kill", len(records), customers, setupFails, streamCuts)
}

// echoHTTP is a tiny HTTP origin for probes.
func echoHTTP(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
