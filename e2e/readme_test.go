package e2e

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

// readmeBlock returns the logical lines (continuations joined, comments
// dropped) of the ```sh block that follows the marker comment in README.md.
func readmeBlock(t *testing.T, marker string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "<!-- e2e: "+marker)
	if !ok {
		t.Fatalf("README.md has no <!-- e2e: %s --> marker", marker)
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	block, _, closed := strings.Cut(rest, "\n```")
	if !ok || !closed {
		t.Fatalf("README.md: no ```sh block after the %s marker", marker)
	}
	var lines []string
	pending := ""
	for _, l := range strings.Split(block, "\n") {
		if s, ok := strings.CutSuffix(l, "\\"); ok {
			pending += s + " "
			continue
		}
		l = strings.TrimSpace(pending + l)
		pending = ""
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return lines
}

// flagOf returns the value of --name in a command line's fields.
func flagOf(fields []string, name string) string {
	for i, f := range fields {
		if f == "--"+name && i+1 < len(fields) {
			return fields[i+1]
		}
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// The README's two-DC gossip farm, run as written: the block's commands
// with only what this machine needs changed. Each DC's machines become
// loopback addresses of their own (a random 127.x/16, so the fixed ports
// 8080, 3128 and 7946 are free), a node's 0.0.0.0 and 127.0.0.1 its own
// address, /etc/farmgate/ a temporary directory, the Redis URL this test's
// redis-server; exits also get --allow-dest 127.0.0.0/8 for the test's
// origin on loopback. Then customers go through both gateways to exits of
// both DCs, over HTTP and SOCKS5.
func TestREADMETwoDCFarm(t *testing.T) {
	t.Parallel()
	needCurl(t)
	rds := redistest.Start(t)
	origin := startDemoOrigin(t)
	dir := t.TempDir()
	bin := farmgateBin(t)

	lines := readmeBlock(t, "two-dc-farm")
	base := fmt.Sprintf("127.%d.", 100+rand.IntN(150))
	mapped := map[string]string{}
	mapIP := regexp.MustCompile(`\b\d+\.\d+\.\d+\.\d+\b`)
	mapOne := func(ip string) string {
		if ip == "0.0.0.0" || ip == "127.0.0.1" { // the node's own: below
			return ip
		}
		if m, ok := mapped[ip]; ok {
			return m
		}
		k := len(mapped)
		mapped[ip] = fmt.Sprintf("%s%d.%d", base, k/250, k%250+1)
		return mapped[ip]
	}
	vars := map[string]string{}
	assign := regexp.MustCompile(`^([A-Z_][A-Z0-9_]*)=(\S+)$`)
	redisURL := regexp.MustCompile(`redis://[^/\s]+/`)
	login := regexp.MustCompile(`^echo (\S+) \| farmgate customers add (\S+) `)

	type node struct {
		fields []string
		ip     string
		p      *process
	}
	var gateways, exits []*node
	var user, password string
	for _, line := range lines {
		for name, v := range vars {
			line = strings.ReplaceAll(line, "$"+name, v)
		}
		if m := assign.FindStringSubmatch(line); m != nil {
			vars[m[1]] = m[2]
			continue
		}
		if m := login.FindStringSubmatch(line); m != nil {
			password, user = m[1], m[2]
		}
		line = strings.ReplaceAll(line, "/etc/farmgate/", dir+"/")
		line = mapIP.ReplaceAllStringFunc(line, mapOne)
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "farmgate" || fields[1] != "gateway" && fields[1] != "exit" {
			line = redisURL.ReplaceAllString(line, "redis://"+rds.Addr()+"/")
			cmd := exec.Command("sh", "-c", line)
			cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("README line %q: %v\n%s", line, err, out)
			}
			continue
		}
		// A node's own address: its gossip's, or its proxy's.
		addr := flagOf(fields, "gossip-listen")
		if addr == "" || strings.HasPrefix(addr, "0.0.0.0:") {
			addr = flagOf(fields, "listen")
		}
		ip, _, err := net.SplitHostPort(addr)
		if err != nil || ip == "0.0.0.0" {
			t.Fatalf("README line %q: cannot tell the node's address", line)
		}
		line = strings.ReplaceAll(line, "0.0.0.0:", ip+":")
		line = strings.ReplaceAll(line, "127.0.0.1:", ip+":")
		line = redisURL.ReplaceAllString(line, "redis://"+rds.Addr()+"/")
		n := &node{fields: strings.Fields(line), ip: ip}
		if fields[1] == "exit" {
			n.fields = append(n.fields, "--allow-dest", "127.0.0.0/8")
			exits = append(exits, n)
		} else {
			gateways = append(gateways, n)
		}
		// One after another, as an operator brings machines up: a node
		// that comes up before all its seeds waits the rejoin interval
		// (20 s with wan) to meet the others.
		n.p = start(t, n.fields[1:]...)
		gossip := flagOf(n.fields, "gossip-listen")
		if gossip == "" {
			gossip = net.JoinHostPort(ip, "7946")
		}
		waitListening(t, gossip)
	}
	if len(gateways) < 2 || len(exits) < 2 || user == "" {
		t.Fatalf("README block: %d gateways, %d exits, customer %q: want a farm in two DCs", len(gateways), len(exits), user)
	}
	logs := func() string {
		var b strings.Builder
		for _, n := range append(slices.Clone(gateways), exits...) {
			fmt.Fprintf(&b, "--- %s\n%s\n", strings.Join(n.fields, " "), n.p.output())
		}
		return b.String()
	}
	for _, g := range gateways {
		waitListening(t, net.JoinHostPort(g.ip, "8080"))
	}

	// Every exit through every gateway, by its own targeting; and a
	// customer without targeting stays in the gateway's DC.
	type want struct {
		gw, proxyUser, scheme, exit string
	}
	var wants []want
	for _, g := range gateways {
		dc := flagOf(g.fields, "dc")
		for _, e := range exits {
			target := fmt.Sprintf("%s-zone-%s-dc-%s-country-%s", user, flagOf(e.fields, "pool"), flagOf(e.fields, "dc"), flagOf(e.fields, "country"))
			wants = append(wants, want{g.ip, target, "http", flagOf(e.fields, "id")})
			if flagOf(e.fields, "dc") == dc && flagOf(e.fields, "pool") == "resi" {
				wants = append(wants, want{g.ip, user, "socks5h", flagOf(e.fields, "id")})
			}
		}
	}
	egressOf := map[string][]string{}
	for _, e := range exits {
		egressOf[flagOf(e.fields, "id")] = strings.Split(flagOf(e.fields, "egress"), ",")
	}
	started := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for _, w := range wants {
		for {
			proxy := fmt.Sprintf("%s://%s:%s@%s", w.scheme, w.proxyUser, password, net.JoinHostPort(w.gw, "8080"))
			r := curl(t, proxy, "http://"+origin.HTTPAddr+"/ip")
			seen := strings.TrimSpace(r.body)
			if r.status == 200 && slices.Contains(egressOf[w.exit], seen) &&
				(w.scheme != "http" || r.header.Get("X-Farmgate-Exit") == w.exit) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s through gateway %s: status %d %s, exit %q, origin saw %q; want exit %s from %v\n%s",
					proxy, w.gw, r.status, r.header.Get("X-Farmgate-Error"), r.header.Get("X-Farmgate-Exit"), seen, w.exit, egressOf[w.exit], logs())
			}
			time.Sleep(200 * time.Millisecond) // the farm is still meeting
		}
	}
	t.Logf("%d requests served as the README says, through %d gateways and %d exits, %v after the last gateway listened",
		len(wants), len(gateways), len(exits), time.Since(started).Round(time.Millisecond))
}
