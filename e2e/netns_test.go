package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// netnsFarm is two datacenters, each a network namespace with a gateway,
// two exits and an origin, joined by a veth pair with netem delay: the WAN.
type netnsFarm struct {
	t     *testing.T
	ns    [2]string // "a", "b"
	ip    [2]string
	vethA string
	dir   string
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("network-namespace tests need root, and CI runs as root")
		}
		t.Skip("network-namespace tests need root (ip netns, tc netem)")
	}
	for _, tool := range []string{"ip", "tc", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is required under CI", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func newNetnsFarm(t *testing.T) *netnsFarm {
	t.Helper()
	id := os.Getpid() % 10000
	n := 100 + os.Getpid()%100
	f := &netnsFarm{t: t, dir: t.TempDir(),
		ns:    [2]string{fmt.Sprintf("fga%d", id), fmt.Sprintf("fgb%d", id)},
		ip:    [2]string{fmt.Sprintf("10.213.%d.1", n), fmt.Sprintf("10.213.%d.2", n)},
		vethA: fmt.Sprintf("fgva%d", id),
	}
	vethB := fmt.Sprintf("fgvb%d", id)
	for _, ns := range f.ns {
		exec.Command("ip", "netns", "del", ns).Run() // a leftover of a killed run
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "link", "add", f.vethA, "netns", f.ns[0], "type", "veth", "peer", "name", vethB, "netns", f.ns[1])
	for i, dev := range []string{f.vethA, vethB} {
		run(t, "ip", "-n", f.ns[i], "addr", "add", f.ip[i]+"/24", "dev", dev)
		run(t, "ip", "-n", f.ns[i], "link", "set", dev, "up")
		// 40 ms each way: an 80 ms round trip between the DCs, and a
		// little loss. Some kernels (sandboxes) have no netem; the test
		// then runs without the WAN delay and says so.
		out, err := exec.Command("ip", "netns", "exec", f.ns[i], "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "40ms", "loss", "0.5%").CombinedOutput()
		if err != nil {
			t.Logf("no WAN delay between the DCs: tc netem failed: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return f
}

// startIn runs a command in DC i's namespace until the test ends.
func (f *netnsFarm) startIn(i int, name string, args ...string) *process {
	f.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", f.ns[i], name}, args...)...)
	var out bytes.Buffer
	mu := &sync.Mutex{}
	p := &process{cmd: cmd, out: &out, mu: mu}
	cmd.Stdout, cmd.Stderr = lockedWriter{&out, mu}, lockedWriter{&out, mu}
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return p
}

// curlIn is curl run as a customer inside DC i.
func (f *netnsFarm) curlIn(i int, proxy, url string) (status int, exit, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", f.ns[i], "curl", "-s", "-o", "/dev/null", "-D", "-",
		"--max-time", "10", "-x", proxy, url).Output()
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "HTTP/"):
			fmt.Sscanf(l, "HTTP/1.1 %d", &status)
		case strings.HasPrefix(strings.ToLower(l), "x-farmgate-exit:"):
			exit = strings.TrimSpace(l[len("x-farmgate-exit:"):])
		case strings.HasPrefix(strings.ToLower(l), "x-farmgate-error:"):
			reason = strings.TrimSpace(l[len("x-farmgate-error:"):])
		}
	}
	return status, exit, reason
}

// Two DCs over an 80 ms WAN: each gateway prefers its own exits and spills
// to the other DC on request; cut one DC off and the other keeps serving
// from its own exits while a customer asking for the lost DC gets 503
// no_exit_available; heal the cut and the cluster is whole again within 60s.
func TestTwoDatacentersSurviveACut(t *testing.T) {
	if testing.Short() {
		t.Skip("takes a few minutes of real gossip timeouts")
	}
	needRoot(t)
	needCurl(t)
	t.Parallel()
	f := newNetnsFarm(t)
	bin := farmgateBin(t)
	token := filepath.Join(f.dir, "token")
	os.WriteFile(token, []byte("netns-token"), 0o600)
	key := filepath.Join(f.dir, "gossip.key")
	os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString([]byte("fedcba9876543210fedcba9876543210"))+"\n"), 0o600)
	customers := filepath.Join(f.dir, "customers.yaml")
	os.WriteFile(customers, []byte("customers:\n  - user: demo\n    password: demo\n    pools: [resi]\n"), 0o600)
	www := filepath.Join(f.dir, "www")
	os.MkdirAll(www, 0o755)
	os.WriteFile(filepath.Join(www, "index.html"), []byte("ok\n"), 0o644)

	dcs := []string{"a", "b"}
	gws := make([]*process, 2)
	for i, dc := range dcs {
		f.startIn(i, "python3", "-m", "http.server", "--bind", "127.0.0.1", "--directory", www, "8000")
		gwArgs := []string{"gateway", "--insecure-links", "--listen", f.ip[i] + ":8080", "--admin", "", "--dc", dc, "--customers", customers,
			"--token-file", token, "--gossip-listen", f.ip[i] + ":7946", "--gossip-key-file", key, "--gossip-profile", "wan",
			"--probe-url", "http://127.0.0.1:8000/"}
		if i == 1 {
			gwArgs = append(gwArgs, "--join", f.ip[0]+":7946")
		}
		gws[i] = f.startIn(i, bin, gwArgs...)
		for k := 1; k <= 2; k++ {
			f.startIn(i, bin, "exit", "--insecure-links", "--listen", fmt.Sprintf("%s:%d", f.ip[i], 3100+k), "--id", fmt.Sprintf("%s%d", dc, k),
				"--dc", dc, "--pool", "resi", "--country", "de", "--token-file", token, "--allow-dest", "127.0.0.0/8",
				"--gossip-listen", fmt.Sprintf("%s:%d", f.ip[i], 7946+k), "--join", f.ip[i]+":7946",
				"--gossip-key-file", key, "--gossip-profile", "wan")
		}
	}
	proxyA := "http://demo:demo@" + f.ip[0] + ":8080"
	proxyAtoB := "http://demo-dc-b:demo@" + f.ip[0] + ":8080"
	origin := "http://127.0.0.1:8000/"

	waitFor := func(what string, limit time.Duration, ok func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !ok() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %s; gateway a log:\n%s", what, limit, gws[0].output())
			}
			time.Sleep(250 * time.Millisecond)
		}
		return time.Since(start)
	}
	// Formed: gateway a reaches DC b when asked to, and its own DC's exits
	// are up (until they are, it rightly spills over to DC b).
	waitFor("the farm forms across both DCs", 60*time.Second, func() bool {
		s, exit, _ := f.curlIn(0, proxyAtoB, origin)
		if s != 200 || !strings.HasPrefix(exit, "b") {
			return false
		}
		s, exit, _ = f.curlIn(0, proxyA, origin)
		return s == 200 && strings.HasPrefix(exit, "a")
	})
	for range 5 {
		if s, exit, _ := f.curlIn(0, proxyA, origin); s != 200 || !strings.HasPrefix(exit, "a") {
			t.Fatalf("gateway a without targeting: %d via %q, want its own DC's exits", s, exit)
		}
	}

	// Cut DC b off.
	run(t, "ip", "-n", f.ns[0], "link", "set", f.vethA, "down")
	cut := time.Now()
	failures := 0
	d := waitFor("a customer asking for the lost DC gets 503 no_exit_available", 120*time.Second, func() bool {
		if s, exit, _ := f.curlIn(0, proxyA, origin); s != 200 || !strings.HasPrefix(exit, "a") {
			failures++
		}
		s, _, reason := f.curlIn(0, proxyAtoB, origin)
		return s == 503 && reason == "no_exit_available"
	})
	t.Logf("DC b declared lost at gateway a %s after the cut", d.Round(time.Second))
	if failures > 0 {
		t.Errorf("%d requests to DC a's own exits failed during the cut", failures)
	}

	// Heal.
	run(t, "ip", "-n", f.ns[0], "link", "set", f.vethA, "up")
	d = waitFor("the cluster is whole again after the cut heals", 60*time.Second, func() bool {
		s, exit, _ := f.curlIn(0, proxyAtoB, origin)
		return s == 200 && strings.HasPrefix(exit, "b")
	})
	t.Logf("whole again %s after the heal (cut lasted %s)", d.Round(time.Second), time.Since(cut).Round(time.Second))
}
