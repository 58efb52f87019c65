package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// farmgateBin builds the real binary once per test run.
func farmgateBin(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "farmgate-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "farmgate")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/farmgate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a farmgate command running for one test.
type process struct {
	cmd *exec.Cmd
	out *bytes.Buffer
	mu  *sync.Mutex
}

func start(t testing.TB, args ...string) *process {
	t.Helper()
	return startEnv(t, nil, args...)
}

// startEnv is start with env added to the test's environment.
func startEnv(t testing.TB, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(farmgateBin(t), args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out bytes.Buffer
	mu := &sync.Mutex{}
	w := lockedWriter{&out, mu}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, out: &out, mu: mu}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return p
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func waitListening(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

// The operator's way: one command per exit, one for the gateway, flags and
// a YAML config; then a customer's curl goes through, and SIGTERM stops it.
func TestCommandsRunAFarm(t *testing.T) {
	t.Parallel()
	links := newPKI(t)
	needCurl(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("  s3cret-token\n"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)

	origin := startDemoOrigin(t)

	exitA, exitB, gw := freeAddr(t), freeAddr(t), freeAddr(t)
	start(t, links.tls("exit", "--listen", exitA, "--id", "de-1", "--dc", "eu", "--pool", "resi", "--country", "de",
		"--egress", "127.0.7.1,127.0.7.2", "--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	exitCfg := filepath.Join(dir, "exit-b.yaml")
	os.WriteFile(exitCfg, []byte(fmt.Sprintf("listen: %s\nid: us-1\ndc: us\npool: resi\ncountry: US\negress: [127.0.8.1, 127.0.8.2]\ntoken-file: %s\nallow-dest: [127.0.0.0/8]\n", exitB, token)), 0o600)
	start(t, append([]string{"exit", "--config", exitCfg}, links.exit("us-1")...)...)
	g := start(t, links.tls("gateway", "--listen", gw, "--admin", "", "--dc", "eu", "--customers", customers,
		"--token-file", token, "--exit", "de-1="+exitA, "--exit", "us-1="+exitB)...)
	waitListening(t, gw)

	want := map[string]string{"demo-country-de": "127.0.7.", "demo-country-us": "127.0.8."}
	deadline := time.Now().Add(10 * time.Second)
	for user, prefix := range want {
		for {
			r := curl(t, "http://"+user+":demo@"+gw, "http://"+origin.HTTPAddr+"/ip")
			if r.status == 200 {
				if ip := strings.TrimSpace(r.body); !strings.HasPrefix(ip, prefix) {
					t.Errorf("%s: origin saw %s, want %s*", user, ip, prefix)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %d %s; gateway log:\n%s", user, r.status, r.all.Get("X-Farmgate-Error"), g.output())
			}
			time.Sleep(100 * time.Millisecond) // the gateway is still learning its exits
		}
	}

	g.cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- g.cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("gateway exited with %v after SIGTERM; log:\n%s", err, g.output())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop within 10s of SIGTERM")
	}
}

func TestBadConfigNamesTheField(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("t"), 0o600)
	badYAML := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badYAML, []byte("listen: 127.0.0.1:0\nid: x\ntoken-file: "+token+"\negres: [1.2.3.4]\n"), 0o600)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"exit", "--id", "x", "--token-file", token, "--egress", "1.2.3"}, "--egress"},
		{[]string{"exit", "--id", "x"}, "--token-file"},
		{[]string{"exit", "--token-file", token}, "id"},
		{[]string{"exit", "--config", badYAML}, "egres"},
		{[]string{"exit", "--id", "x", "--token-file", token, "--allow-dest", "10.0.0.0/33"}, "--allow-dest"},
		{[]string{"gateway", "--token-file", token, "--exit", "a=127.0.0.1:1"}, "--customers"},
		{[]string{"gateway", "--nope"}, "nope"},
		{[]string{"gateway", "--token-file", token, "--customers", token, "--exit", "a=127.0.0.1:1", "--max-idle-exit-conns", "0"}, "--max-idle-exit-conns"},
		{[]string{"demo", "--exits", "0"}, "--exits"},
		{[]string{"frobnicate"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, farmgateBin(t), tc.args...).CombinedOutput()
			if err == nil {
				t.Fatalf("exited 0; output:\n%s", out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output does not name %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, err := exec.Command(farmgateBin(t), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "farmgate ") {
		t.Fatalf("version: %v %q", err, out)
	}
}

// startDemoOrigin starts the demo origin on a free loopback port until the
// test ends.
func startDemoOrigin(t testing.TB) *demo.Origin {
	t.Helper()
	origin, err := demo.StartOrigin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Shutdown(context.Background()) })
	return origin
}
