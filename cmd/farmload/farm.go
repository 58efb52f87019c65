//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// farm is the set of processes under test: four exits and one gateway, each
// its own process so its memory and CPU are its own.
type farm struct {
	dir       string // scratch directory: token, customers file, logs
	token     string // gateway↔exit token
	gateway   *child
	exits     []*child
	reference *child // the reference proxy in front of the exits; nil without --reference
	// With --exit-delay, every way to an exit goes through one of these;
	// exitAddrs are the addresses to reach the exits by.
	relays    []*delayRelay
	exitAddrs []string
	exitEnv   []string // extra environment of the exit processes
	// With --tls-links: a second gateway whose links to four more exits
	// are mutual TLS. nil without.
	tlsGateway *child
	tlsExits   []*child
}

// modeTLS is the mode of the gateway with TLS links (--tls-links).
const modeTLS = "gateway-tls"

// child is one farmgate process.
type child struct {
	name string
	addr string // host:port it listens on
	cmd  *exec.Cmd
	log  string // path of its combined stdout/stderr
	done chan struct{}
}

const (
	numExits     = 4
	loadUser     = "load"
	loadPassword = "load"
	loadPool     = "resi"
)

// buildFarmgate builds ./cmd/farmgate of the module that holds the current
// directory into dir and returns the binary's path.
func buildFarmgate(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find module root: not inside the farmgate module; run from the repo root or pass --farmgate")
	}
	bin := filepath.Join(dir, "farmgate")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/farmgate")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/farmgate: %w\n%s", err, out)
	}
	return bin, nil
}

// startFarm starts the exits, then the gateway in front of them, and waits
// until each exit listens and a tunnel through the gateway works.
func startFarm(ctx context.Context, bin, dir string, o *origins, opts options) (*farm, error) {
	reference, exitDelay := opts.Reference, opts.ExitDelay
	f := &farm{dir: dir}
	if opts.ExitProcs > 0 {
		f.exitEnv = []string{fmt.Sprintf("GOMAXPROCS=%d", opts.ExitProcs)}
	}
	tok := make([]byte, 16)
	rand.Read(tok)
	f.token = hex.EncodeToString(tok)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(f.token+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write token file: %w", err)
	}
	customers := filepath.Join(dir, "customers.yaml")
	yaml := fmt.Sprintf("customers:\n  - user: %s\n    password: %s\n    pools: [%s]\n", loadUser, loadPassword, loadPool)
	if err := os.WriteFile(customers, []byte(yaml), 0o600); err != nil {
		return nil, fmt.Errorf("write customers file: %w", err)
	}

	// One set of exits and a gateway per kind of link: plaintext always,
	// mutual TLS with --tls-links. Each exit has egress IPs of its own.
	kinds := []string{"plaintext"}
	if opts.TLSLinks {
		kinds = append(kinds, "tls")
	}
	for k, kind := range kinds {
		links := map[string][]string{}
		if kind == "tls" {
			var err error
			if links, err = mintLinks(filepath.Join(dir, "pki"), numExits); err != nil {
				f.stop()
				return nil, err
			}
		}
		var exitFlags []string
		for i := range numExits {
			id := fmt.Sprintf("e%d", i+1)
			if kind == "tls" {
				id = fmt.Sprintf("t%d", i+1)
			}
			var egress []string
			for j := 1; j <= 4; j++ {
				egress = append(egress, fmt.Sprintf("127.0.%d.%d", 11+k*numExits+i, j))
			}
			args := []string{"exit", "--id", id, "--dc", "eu", "--pool", loadPool, "--country", "de",
				"--egress", strings.Join(egress, ","), "--token-file", tokenFile, "--allow-dest", "127.0.0.0/8",
				"--drain-timeout", "1s"}
			c, err := f.start(ctx, bin, id, append(args, linkFlags(links, id)...)...)
			if err != nil {
				f.stop()
				return nil, err
			}
			reach := c.addr
			if exitDelay > 0 {
				r, err := startDelayRelay(c.addr, exitDelay)
				if err != nil {
					f.stop()
					return nil, fmt.Errorf("relay to exit %s: %w", id, err)
				}
				f.relays = append(f.relays, r)
				reach = r.addr()
			}
			if kind == "tls" {
				f.tlsExits = append(f.tlsExits, c)
			} else {
				f.exits = append(f.exits, c)
				f.exitAddrs = append(f.exitAddrs, reach)
			}
			exitFlags = append(exitFlags, "--exit", id+"="+reach)
		}
		name := "gateway"
		if kind == "tls" {
			name = modeTLS
		}
		args := append([]string{"gateway", "--admin", "", "--dc", "eu", "--customers", customers,
			"--token-file", tokenFile, "--drain-timeout", "1s"}, exitFlags...)
		c, err := f.start(ctx, bin, name, append(args, linkFlags(links, "gateway")...)...)
		if err != nil {
			f.stop()
			return nil, err
		}
		proxy := proxyTarget{addr: c.addr, auth: basicAuth(loadUser, loadPassword)}
		if kind == "tls" {
			f.tlsGateway = c
		} else {
			f.gateway = c
		}
		if err := f.waitGateway(ctx, o, proxy, c); err != nil {
			f.stop()
			return nil, err
		}
	}
	if reference == refHAProxy {
		var err error
		if f.reference, err = f.startHAProxy(ctx, o); err != nil {
			f.stop()
			return nil, err
		}
	}
	return f, nil
}

// refHAProxy names the reference proxy farmload knows: HAProxy in TCP mode,
// what the comparison figures were measured with.
const refHAProxy = "haproxy"

// startHAProxy runs HAProxy in plain TCP mode in front of the exits (round
// robin, no parsing, no auth: customers send the exits' own token through
// it), with splicing where it pays and its default threads (one per CPU).
func (f *farm) startHAProxy(ctx context.Context, o *origins) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("pick a port for haproxy: %w", err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global\n  maxconn 6000\n\ndefaults\n  mode tcp\n  option splice-auto\n"+
		"  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\nlisten farm\n  bind %s\n  balance roundrobin\n", addr)
	for i, a := range f.exitAddrs {
		fmt.Fprintf(&cfg, "  server e%d %s\n", i+1, a)
	}
	path := filepath.Join(f.dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		return nil, fmt.Errorf("write haproxy config: %w", err)
	}
	c, err := f.run(ctx, "haproxy", addr, nil, "haproxy", "-db", "-f", path)
	if err != nil {
		return nil, err
	}
	// A tunnel through it must work before the load starts.
	cl := newClient(proxyTarget{addr: addr, auth: "Bearer " + f.token})
	if _, _, err := cl.tunnelOnce(ctx, o.echo.next()); err != nil {
		c.kill()
		return nil, fmt.Errorf("tunnel through haproxy: %w\n%s", err, tail(c.log))
	}
	return c, nil
}

// referenceProxy is how a customer talks to the reference proxy: with the
// exits' token, since it passes bytes through.
func (f *farm) referenceProxy() proxyTarget {
	return proxyTarget{addr: f.reference.addr, auth: "Bearer " + f.token}
}

// start runs `bin args... --listen 127.0.0.1:PORT` on a free port and waits
// until it accepts connections (at most 10s).
func (f *farm) start(ctx context.Context, bin, name string, args ...string) (*child, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("pick a port for %s: %w", name, err)
	}
	args = append(args[:1:1], append([]string{"--listen", addr}, args[1:]...)...)
	var env []string
	if args[0] == "exit" {
		env = f.exitEnv
	}
	return f.run(ctx, name, addr, env, bin, args...)
}

// freeAddr returns a loopback address with a port free right now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// run starts bin with args and env added to farmload's environment; bin
// listens on addr, and run waits until it accepts connections (at most 10s).
func (f *farm) run(ctx context.Context, name, addr string, env []string, bin string, args ...string) (*child, error) {
	logPath := filepath.Join(f.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If farmload dies without cleaning up, the kernel kills the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, addr: addr, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(c.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp4", addr, time.Second)
		if err == nil {
			conn.Close()
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("%s exited at start (%s):\n%s", name, cmd.ProcessState, tail(logPath))
		case <-ctx.Done():
			c.kill()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.kill()
			return nil, fmt.Errorf("%s does not listen on %s after 10s:\n%s", name, addr, tail(logPath))
		}
	}
}

// waitGateway waits (at most 20s) until tunnels through the gateway work
// and have reached every exit: the gateway learns the exits' metadata
// asynchronously.
func (f *farm) waitGateway(ctx context.Context, o *origins, proxy proxyTarget, gw *child) error {
	cl := newClient(proxy)
	seen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	var lastErr error
	// Stop when every exit has carried a tunnel, or after 200 successes:
	// the default policy may prefer some exits, and LearnExits adds them
	// all within milliseconds of the first.
	for ok := 0; len(seen) < numExits && ok < 200; {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready after 20s (exits seen %v): %v\n%s", gw.name, seen, lastErr, tail(gw.log))
		}
		_, exit, err := cl.tunnelOnce(ctx, o.echo.next())
		if err != nil {
			lastErr = err
			time.Sleep(50 * time.Millisecond)
			continue
		}
		ok++
		seen[exit] = true
	}
	return nil
}

// gatewayProxy is how a customer talks to the gateway.
func (f *farm) gatewayProxy() proxyTarget {
	return proxyTarget{addr: f.gateway.addr, auth: basicAuth(loadUser, loadPassword)}
}

// tlsGatewayProxy is how a customer talks to the gateway with TLS links.
func (f *farm) tlsGatewayProxy() proxyTarget {
	return proxyTarget{addr: f.tlsGateway.addr, auth: basicAuth(loadUser, loadPassword)}
}

// directProxy is how the gateway talks to the first exit.
func (f *farm) directProxy() proxyTarget {
	return proxyTarget{addr: f.exitAddrs[0], auth: "Bearer " + f.token}
}

// stop kills every process the farm started and waits for them.
func (f *farm) stop() {
	var all []*child
	if f.gateway != nil {
		all = append(all, f.gateway)
	}
	if f.tlsGateway != nil {
		all = append(all, f.tlsGateway)
	}
	all = append(all, f.exits...)
	all = append(all, f.tlsExits...)
	if f.reference != nil {
		all = append(all, f.reference)
	}
	for _, c := range all {
		c.kill()
	}
	for _, r := range f.relays {
		r.close()
	}
}

func (c *child) kill() {
	c.cmd.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := strings.Fields(string(v))
			if len(f) < 1 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS in /proc status", pid)
}

// tail is the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// cpuSeconds is the user+system CPU time the pids have used, from
// /proc/PID/stat.
func cpuSeconds(pids ...int) (float64, error) {
	var sum float64
	for _, pid := range pids {
		s, err := cpuSecondsOf(pid)
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}

func cpuSecondsOf(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	// Fields after the command name, which is in parentheses: state is
	// field 3 of the stat line, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("pid %d: short /proc stat", pid)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("pid %d: bad /proc stat", pid)
	}
	return float64(u+s) / clockTicks, nil
}

// clockTicks is USER_HZ, the unit of /proc CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100
