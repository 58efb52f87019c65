package exitnode_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// netnsEnv marks a test binary re-executed inside a fresh network namespace.
const netnsEnv = "FARMGATE_EXITNODE_IN_NETNS"

// runInNetns re-executes this test binary as "unshare -n" running only the
// test named child, and fails if that child fails or does not run. It skips
// (saying why) without root, except under CI=true where it fails.
func runInNetns(t *testing.T, child string) {
	t.Helper()
	if os.Getenv(netnsEnv) != "" {
		return // already inside: the child test does the work
	}
	skip := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI=true requires this test to run", why)
		}
		t.Skipf("%s: this test runs in a fresh network namespace (unshare -n) that has only loopback", why)
	}
	if os.Geteuid() != 0 {
		skip("needs root")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		skip("needs unshare(1)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		skip("needs ip(8)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, unshare, "-n", "--", os.Args[0],
		"-test.run=^"+child+"$", "-test.v", "-test.count=1", "-test.timeout=50s")
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("inside the namespace:\n%s", out)
	if err != nil {
		t.Fatalf("%s in a network namespace: %v", child, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+child) {
		t.Fatalf("%s did not run in the network namespace", child)
	}
}

// inNetnsChild reports whether this is the re-executed child; if so it brings
// loopback up, and checks the namespace has no other interface, so dials
// to denied addresses can reach nothing outside it.
func inNetnsChild(t *testing.T) bool {
	t.Helper()
	if os.Getenv(netnsEnv) == "" {
		t.Skip("runs only inside the network namespace its parent test creates")
		return false
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 || ifs[0].Flags&net.FlagLoopback == 0 {
		t.Fatalf("namespace has interfaces %v; want only loopback", ifs)
	}
	ipCmd(t, "link", "set", "lo", "up")
	return true
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
