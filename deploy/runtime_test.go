package deploy

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the process's writes and our reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a farmgate started by a test.
type process struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when it has exited
	err  error         // its exit error, once done is closed
}

// startFarmgate runs farmgate with args and waits until its log says
// "serving". t.Cleanup stops it.
func startFarmgate(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(farmgateBin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.After(10 * time.Second)
	for !strings.Contains(p.out.String(), "serving") {
		select {
		case <-p.done:
			t.Fatalf("farmgate %s exited before serving: %v\n%s", args[0], p.err, p.out)
		case <-deadline:
			t.Fatalf("farmgate %s not serving after 10s:\n%s", args[0], p.out)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

// writeFile writes a file in dir and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// minimalArgs returns a command line on which a subcommand starts alone on
// loopback, without Redis or gossip.
func minimalArgs(t *testing.T, sub string) []string {
	dir := t.TempDir()
	token := writeFile(t, dir, "token", "test-token\n")
	switch sub {
	case "gateway":
		customers := writeFile(t, dir, "customers.yaml", "customers:\n  - user: demo\n    password: demo\n    pools: [resi]\n")
		return []string{"gateway", "--insecure-links", "--listen", "127.0.0.1:0", "--admin", "", "--token-file", token, "--customers", customers,
			"--exit", "t-1=127.0.0.1:9"}
	case "exit":
		return []string{"exit", "--insecure-links", "--listen", "127.0.0.1:0", "--id", "t-1", "--token-file", token}
	}
	t.Fatalf("no minimal command line for %q", sub)
	return nil
}

// TestReloadSignalKeepsRunning: the systemd units reload with
// `kill -HUP $MAINPID` (and the compose README with `docker compose kill -s
// HUP`); a process without a SIGHUP handler would die of it instead.
func TestReloadSignalKeepsRunning(t *testing.T) {
	for _, path := range unitFiles(t) {
		u, err := parseUnit(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(u.last("Service", "ExecReload"), "HUP") {
			continue
		}
		sub := execLine(t, path, u)[0]
		t.Run(sub, func(t *testing.T) {
			t.Parallel()
			p := startFarmgate(t, minimalArgs(t, sub)...)
			if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.done:
				t.Fatalf("farmgate %s exited on SIGHUP (%v): ExecReload= of %s would kill it\n%s", sub, p.err, filepath.Base(path), p.out)
			case <-time.After(time.Second):
			}
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("farmgate %s did not stop on SIGTERM after a SIGHUP", sub)
			}
		})
	}
}

// nonLoopbackIP returns an IPv4 address of this machine that is not
// loopback, or "" when there is none.
func nonLoopbackIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestProbesNeedNoToken: Kubernetes probes /healthz and /readyz on the admin
// port from the kubelet, which is not on loopback and sends no bearer token;
// they must not be refused with 401.
func TestProbesNeedNoToken(t *testing.T) {
	t.Parallel()
	ip := nonLoopbackIP()
	if ip == "" {
		t.Skip("no non-loopback IPv4 address to probe from")
	}
	port := freePort(t)
	args := minimalArgs(t, "gateway")
	dir := t.TempDir()
	args = append(args, "--admin", fmt.Sprintf("0.0.0.0:%d", port), "--admin-token-file", writeFile(t, dir, "admin-token", "admin-secret\n"))
	startFarmgate(t, args...)
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := client.Get(fmt.Sprintf("http://%s:%d%s", ip, port, path))
		if err != nil {
			t.Errorf("GET %s from %s: %v", path, ip, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			t.Errorf("GET %s from a non-loopback client without a token: %s; kubelet probes (deploy/kubernetes/gateway.yaml) would fail", path, resp.Status)
		} else if path == "/healthz" && resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %s, want 200", path, resp.Status)
		}
	}
	// The rest of the admin API still wants the token.
	resp, err := client.Get(fmt.Sprintf("http://%s:%d/api/exits", ip, port))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/exits without a token from %s: %s, want 401", ip, resp.Status)
	}
}
