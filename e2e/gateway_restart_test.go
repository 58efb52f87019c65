package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// Both gateways of a farm restarted at once (an upgrade, a host reboot) get
// every exit back without any exit being restarted: the exits keep trying
// the gateways' last addresses, and a gateway that reaches only itself keeps
// trying its seeds. It runs with the seeds of the old deploy files (the
// gateways only: the exits must find their way back) and with those of the
// current ones (gateways and exits: the gateways find the exits).
//
// The target is a few seconds of --gossip-rejoin-interval (1s here);
// the test logs the time from the restarted gateways' start until both list
// every exit, and fails only past a deadline meant for a busy machine.
func TestBothGatewaysRestartedGetTheExitsBack(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		exitsSeeds bool // the exits are seeds too, for gateways and exits
	}{
		{"seeds are the gateways", false},
		{"seeds are the gateways and the exits", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			restartBothGateways(t, tc.exitsSeeds)
		})
	}
}

const (
	restartRejoin   = time.Second      // --gossip-rejoin-interval of every node
	restartDeadline = 30 * time.Second // for a busy machine; the target is a few seconds
)

func restartBothGateways(t *testing.T, exitsSeeds bool) {
	links := newPKI(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("restart-e2e-token"), 0o600)
	keyFile := filepath.Join(dir, "gossip.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))+"\n"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)

	exitIDs := []string{"r1", "r2", "r3"}
	gwGossip := []string{stableAddr(t), stableAddr(t)}
	exitGossip := []string{stableAddr(t), stableAddr(t), stableAddr(t)}
	seeds := slices.Clone(gwGossip)
	if exitsSeeds {
		seeds = append(seeds, exitGossip...)
	}
	join := strings.Join(seeds, ",")
	rejoin := restartRejoin.String()

	type gateway struct{ listen, admin, gossip string }
	gws := []gateway{
		{freeAddr(t), freeAddr(t), gwGossip[0]},
		{freeAddr(t), freeAddr(t), gwGossip[1]},
	}
	startGateway := func(g gateway) *process {
		return start(t, links.tls("gateway", "--listen", g.listen, "--admin", g.admin, "--dc", "eu", "--customers", customers,
			"--token-file", token, "--gossip-listen", g.gossip, "--join", join, "--gossip-key-file", keyFile,
			"--gossip-rejoin-interval", rejoin, "--drain-timeout", "5s")...)
	}
	procs := []*process{startGateway(gws[0]), startGateway(gws[1])}
	for i, id := range exitIDs {
		start(t, links.tls("exit", "--listen", freeAddr(t), "--id", id, "--dc", "eu", "--pool", "resi", "--country", "de",
			"--egress", fmt.Sprintf("127.0.%d.1", 60+i), "--token-file", token, "--allow-dest", "127.0.0.0/8",
			"--gossip-listen", exitGossip[i], "--join", join, "--gossip-key-file", keyFile,
			"--gossip-rejoin-interval", rejoin)...)
	}
	for i, g := range gws {
		waitListening(t, g.admin)
		if !waitExits(t, g.admin, exitIDs, 20*time.Second) {
			t.Fatalf("gateway %d does not list every exit before the restart: %v; log:\n%s", i+1, listExits(t, g.admin), procs[i].output())
		}
	}

	// SIGTERM both at once, as an upgrade of the gateway tier would.
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() {
			p.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan error, 1)
			go func() { done <- p.cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("gateway %d after SIGTERM: %v", i+1, err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("gateway %d did not stop 20s after SIGTERM; log:\n%s", i+1, p.output())
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	started := time.Now()
	procs = []*process{startGateway(gws[0]), startGateway(gws[1])}
	var took [2]time.Duration
	for i, g := range gws {
		if !waitExits(t, g.admin, exitIDs, restartDeadline-time.Since(started)) {
			t.Fatalf("restarted gateway %d lists %v, not every exit, %v after the restart; log:\n%s",
				i+1, listExits(t, g.admin), restartDeadline, procs[i].output())
		}
		took[i] = time.Since(started)
	}
	t.Logf("seeds %s: every exit listed again by both restarted gateways %v after their start (gateway 1 %v, gateway 2 %v; rejoin interval %v)",
		join, max(took[0], took[1]).Round(time.Millisecond), took[0].Round(time.Millisecond), took[1].Round(time.Millisecond), restartRejoin)

	// A gateway that reached only itself has not joined anything.
	selfJoin := regexp.MustCompile(`msg="?joined cluster.* members=1( |$)`)
	for i, p := range procs {
		for line := range strings.Lines(p.output()) {
			if selfJoin.MatchString(line) {
				t.Errorf("gateway %d logs a join that reached only itself as success: %s", i+1, line)
			}
		}
	}
}

// stableAddr returns a loopback address whose port is free, TCP and UDP, for
// a gossip listener that restarts on it. The port is below Linux's ephemeral
// range (32768 and up), where the outgoing connections of the other tests
// could take it while its process is down.
func stableAddr(t testing.TB) string {
	t.Helper()
	for range 1000 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return addr
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

// listExits returns the ids /api/exits lists at admin, or nil on an error.
func listExits(t testing.TB, admin string) []string {
	t.Helper()
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + admin + "/api/exits")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var list []struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&list) != nil {
		return nil
	}
	ids := make([]string, 0, len(list))
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

// waitExits polls /api/exits at admin until it lists exactly want (sorted),
// for up to within, and reports whether it did.
func waitExits(t testing.TB, admin string, want []string, within time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(50 * time.Millisecond) {
		if slices.Equal(listExits(t, admin), want) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
