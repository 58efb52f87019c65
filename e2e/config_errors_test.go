package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An operator's mistakes, each met with a message that names the flag (or
// the file and line, or the variable), the value, and what would do.
func TestConfigErrorsSayWhatIsAccepted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", "t")
	key := write("gossip.key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
	badCustomers := write("customers.yaml", "customers:\n  - user: alice\n   password: x\n    pools: [resi]\n")
	unknownKey := write("customers2.yaml", "customers:\n  - user: alice\n    pasword: x\n    pools: [resi]\n")
	missing := filepath.Join(dir, "nope.yaml")
	customersFile := filepath.Join(dir, "managed.yaml")
	tests := []struct {
		name string
		env  []string
		args []string
		ok   bool     // the command succeeds
		want []string // in its output, each
		not  []string // never in its output
	}{
		{name: "duration without a unit", args: []string{"exit", "--id", "x", "--token-file", token, "--idle-timeout", "5"},
			want: []string{`--idle-timeout: "5" is not a duration; use a unit, e.g. 5s or 2m`}},
		{name: "gateway duration without a unit", args: []string{"gateway", "--exit-reply-timeout", "15"},
			want: []string{`--exit-reply-timeout: "15" is not a duration; use a unit, e.g. 5s or 2m`}},
		{name: "quota and rate in the help's notation", args: []string{"customers", "add", "bob", "--pools", "resi",
			"--password-hash", "$2a$04$abcdefghijklmnopqrstuuJ3Gz4Dz2Ckq1qKn0gGgn8m3ezn2hmR6", "--quota", "100GB", "--rate", "5/s", "--file", customersFile},
			ok: true, want: []string{"quota_bytes:  100000000000", "rate_per_sec: 5"}},
		{name: "quota in an unknown unit", args: []string{"customers", "add", "carol", "--pools", "resi", "--password-stdin", "--quota", "100XB", "--file", customersFile},
			want: []string{`--quota: "100XB" is not a size; use bytes or a unit, e.g. 100GB`}},
		{name: "YAML error on line 3", args: []string{"gateway", "--insecure-links", "--token-file", token, "--customers", badCustomers, "--exit", "a=127.0.0.1:1", "--admin", "", "--listen", "127.0.0.1:0"},
			want: []string{"--customers: " + badCustomers + ":3: did not find expected '-' indicator"}},
		{name: "unknown key in the customers file", args: []string{"gateway", "--insecure-links", "--token-file", token, "--customers", unknownKey, "--exit", "a=127.0.0.1:1", "--admin", "", "--listen", "127.0.0.1:0"},
			want: []string{unknownKey + ":3: pasword: unknown key; did you mean password?", "password_hash"}},
		{name: "missing customers file", args: []string{"gateway", "--token-file", token, "--customers", missing},
			want: []string{"--customers: ", missing, "no such file"}, not: []string{"--exit"}},
		{name: "exit without a pool under gossip", args: []string{"exit", "--insecure-links", "--id", "x", "--token-file", token, "--join", "127.0.0.1:1", "--gossip-key-file", key},
			want: []string{"--pool: required"}, not: []string{"Meta.Pool"}},
		{name: "egress address the host does not have", args: []string{"exit", "--insecure-links", "--id", "x", "--token-file", token, "--egress", "192.0.2.77", "--listen", "127.0.0.1:0"},
			want: []string{"--egress: 192.0.2.77 cannot be bound on this host"}},
		{name: "misspelt variable", env: []string{"FARMGATE_LISTN=127.0.0.1:1"}, args: []string{"exit", "--id", "x"},
			want: []string{"unknown FARMGATE_ variable ignored", "var=FARMGATE_LISTN", "did_you_mean=FARMGATE_LISTEN", "--token-file: required"}},
		{name: "redis client lines go through the structured log", args: []string{"gateway", "--insecure-links", "--token-file", token, "--redis-url", "redis://127.0.0.1:1/0", "--exit", "a=127.0.0.1:2", "--admin", "", "--listen", "127.0.0.1:0"},
			want: []string{`level=WARN msg="connection pool: failed to dial`, "component=redis", "connect to redis"}, not: []string{"pool.go:"}},
		{name: "misspelt flag", args: []string{"gateway", "--listn", "x"},
			want: []string{"--listn: unknown flag; did you mean --listen?"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, farmgateBin(t), tc.args...)
			cmd.Env = append(os.Environ(), tc.env...)
			cmd.Stdin = strings.NewReader("pw\n")
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want success %v; output:\n%s", err, tc.ok, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not say %q:\n%s", w, out)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(string(out), n) {
					t.Errorf("output says %q:\n%s", n, out)
				}
			}
		})
	}
}

// loopbackIP returns an address of 127.0.0.0/8 that no other test picks
// (a random one), so that fixed ports such as gossip's 7946 are free on it.
func loopbackIP() string {
	return fmt.Sprintf("127.%d.%d.%d", 100+rand.IntN(150), rand.IntN(256), 1+rand.IntN(250))
}

// Without --gossip-listen, a node gossips on its --listen host, port 7946:
// exits on one host, each on its own address, do not collide; two on one
// address are told which flag to set.
func TestGossipDefaultsToTheListenHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("t"), 0o600)
	key := filepath.Join(dir, "gossip.key")
	os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	ip := loopbackIP()
	seed := ip + ":7946"
	exit := func(id, port string) *process {
		return start(t, "exit", "--insecure-links", "--id", id, "--pool", "resi", "--token-file", token, "--gossip-key-file", key,
			"--listen", ip+":"+port, "--join", seed)
	}
	a := exit("a", "3128")
	waitListening(t, seed)
	if !waitOutput(a, "addr="+seed) {
		t.Fatalf("exit a does not gossip on %s:\n%s", seed, a.output())
	}
	b := exit("b", "3129")
	if err := waitExit(b, 10*time.Second); err == nil {
		t.Fatalf("exit b on the same gossip address exited 0:\n%s", b.output())
	}
	want := "--gossip-listen: " + seed + " (the host of --listen, port 7946) is in use"
	if !strings.Contains(b.output(), want) {
		t.Errorf("exit b does not say %q:\n%s", want, b.output())
	}
}

// waitOutput polls p's output for s, up to 10 s.
func waitOutput(p *process, s string) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(p.output(), s) {
			return true
		}
	}
	return false
}

// waitExit waits for p to end, up to d.
func waitExit(p *process, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("still running after %v", d)
	}
}
