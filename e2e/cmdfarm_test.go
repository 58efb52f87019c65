package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// cmdFarm is a farm of real processes, as an operator runs one: a
// `farmgate gateway` (customers from a file, exits named with --exit, no
// --probe-url) in front of `farmgate exit`s that can be killed and
// restarted on their address, and a demo origin in this process.
type cmdFarm struct {
	t      testing.TB
	gw     string // customer listener
	admin  string // admin listener (loopback: no token)
	origin *demo.Origin
	gwProc *process

	mu    sync.Mutex // guards procs
	args  map[string][]string
	addrs map[string]string
	procs map[string]*process
}

// cmdExit is one exit of a cmdFarm: pool resi, DC eu, country as given.
type cmdExit struct{ id, country string }

// startCmdFarm starts the exits and the gateway and waits until the
// gateway reports every exit healthy.
func startCmdFarm(t *testing.T, exits []cmdExit) *cmdFarm {
	t.Helper()
	return startCmdFarmWith(t, exits)
}

// startCmdFarmWith is startCmdFarm with more flags for the gateway.
func startCmdFarmWith(t *testing.T, exits []cmdExit, gwExtra ...string) *cmdFarm {
	t.Helper()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("cmd-farm-token\n"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)
	origin := startDemoOrigin(t)

	f := &cmdFarm{t: t, gw: freeAddr(t), admin: freeAddr(t), origin: origin,
		args: map[string][]string{}, addrs: map[string]string{}, procs: map[string]*process{}}
	links := newPKI(t)
	gwArgs := links.tls("gateway", "--listen", f.gw, "--admin", f.admin, "--dc", "eu",
		"--customers", customers, "--token-file", token)
	for i, e := range exits {
		addr := freeAddr(t)
		f.addrs[e.id] = addr
		f.args[e.id] = links.tls("exit", "--listen", addr, "--id", e.id, "--dc", "eu", "--pool", "resi",
			"--country", e.country, "--egress", fmt.Sprintf("127.0.%d.1,127.0.%d.2", 90+i, 90+i),
			"--token-file", token, "--allow-dest", "127.0.0.0/8")
		f.startExit(e.id)
		gwArgs = append(gwArgs, "--exit", e.id+"="+addr)
	}
	for _, e := range exits {
		waitListening(t, f.addrs[e.id])
	}
	f.gwProc = start(t, append(gwArgs, gwExtra...)...)
	waitListening(t, f.gw)
	waitListening(t, f.admin)
	f.waitState(20*time.Second, func(states map[string]string) bool {
		if len(states) != len(exits) {
			return false
		}
		for _, s := range states {
			if s != "healthy" {
				return false
			}
		}
		return true
	}, "every exit known and healthy")
	return f
}

// startExit starts exit id on its address.
func (f *cmdFarm) startExit(id string) {
	p := start(f.t, f.args[id]...)
	f.mu.Lock()
	f.procs[id] = p
	f.mu.Unlock()
}

// proc returns the running process of exit id.
func (f *cmdFarm) proc(id string) *process {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs[id]
}

// kill SIGKILLs exit id and reaps it.
func (f *cmdFarm) kill(id string) {
	p := f.proc(id)
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

// states returns each exit's state as the gateway's admin API reports it.
func (f *cmdFarm) states() (map[string]string, error) {
	resp, err := http.Get("http://" + f.admin + "/api/exits")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var list []struct{ ID, State string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(list))
	for _, e := range list {
		out[e.ID] = e.State
	}
	return out, nil
}

// waitState polls the admin API until ok holds, for at most d.
func (f *cmdFarm) waitState(d time.Duration, ok func(map[string]string) bool, what string) {
	f.t.Helper()
	deadline := time.Now().Add(d)
	var last map[string]string
	for {
		s, err := f.states()
		if err == nil && ok(s) {
			return
		}
		last = s
		if time.Now().After(deadline) {
			f.t.Fatalf("waiting %s for %s: exits %v (err %v); gateway log:\n%s", d, what, last, err, f.gwProc.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxy returns the gateway's proxy URL for user (password demo).
func (f *cmdFarm) proxy(user string) string {
	return "http://" + user + ":demo@" + f.gw
}

// client returns a Go HTTP client whose requests go through the gateway
// as user: for tests that send requests faster than a curl process each.
func (f *cmdFarm) client(user string) *http.Client {
	u, _ := url.Parse(f.proxy(user))
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(u)},
		Timeout:   20 * time.Second,
	}
}
