package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// farmgateRun runs the command line args as the binary would and returns
// its exit status and output.
func farmgateRun(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// The operator's way to certificates: init once, issue per node; the
// files load as a node's TLS material.
func TestCertsInitIssue(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pki")
	if code, out, errs := farmgateRun("certs", "init", "--dir", dir); code != 0 || !strings.Contains(out, "ca.pem") {
		t.Fatalf("certs init: status %d, %s%s", code, out, errs)
	}
	mode(t, filepath.Join(dir, "ca-key.pem"), 0o600)
	mode(t, filepath.Join(dir, "ca.pem"), 0o644)
	ca := mustRead(t, filepath.Join(dir, "ca.pem"))

	// A second init would orphan every certificate: it takes --force.
	code, _, errs := farmgateRun("certs", "init", "--dir", dir)
	if code != 2 || !strings.Contains(errs, "--force") || !strings.Contains(errs, "--dir") {
		t.Errorf("second certs init: status %d, %q; want 2 and the flags named", code, errs)
	}
	if !bytes.Equal(mustRead(t, filepath.Join(dir, "ca.pem")), ca) {
		t.Fatal("a refused init replaced the CA")
	}

	if code, out, errs := farmgateRun("certs", "issue", "--dir", dir, "--role", "exit", "--id", "eu-1"); code != 0 ||
		!strings.Contains(out, "farmgate://exit/eu-1") {
		t.Fatalf("certs issue exit: status %d, %s%s", code, out, errs)
	}
	prefix := filepath.Join(t.TempDir(), "keys", "gw")
	if code, out, errs := farmgateRun("certs", "issue", "--dir", dir, "--role", "gateway", "--id", "gw/eu 1", "--out", prefix); code != 0 {
		t.Fatalf("certs issue gateway --out: status %d, %s%s", code, out, errs)
	}
	mode(t, filepath.Join(dir, "eu-1-key.pem"), 0o600)
	mode(t, prefix+"-key.pem", 0o600)
	nodes := []struct {
		cert, key string
		role      farmtls.Role
		id        string
	}{
		{filepath.Join(dir, "eu-1.pem"), filepath.Join(dir, "eu-1-key.pem"), farmtls.RoleExit, "eu-1"},
		{prefix + ".pem", prefix + "-key.pem", farmtls.RoleGateway, "gw/eu 1"},
	}
	for _, n := range nodes {
		h, err := farmtls.New(farmtls.Config{CertFile: n.cert, KeyFile: n.key, CAFile: filepath.Join(dir, "ca.pem"), Role: n.role, ID: n.id})
		if err != nil {
			t.Fatalf("%s %q: %v", n.role, n.id, err)
		}
		if n.role != farmtls.RoleExit {
			continue
		}
		// Issuing again rotates: new key, new serial, same name.
		serial := h.Leaf().SerialNumber
		if code, _, errs := farmgateRun("certs", "issue", "--dir", dir, "--role", "exit", "--id", "eu-1"); code != 0 {
			t.Fatalf("re-issue: %s", errs)
		}
		if err := h.Reload(); err != nil {
			t.Fatal(err)
		}
		if h.Leaf().SerialNumber.Cmp(serial) == 0 {
			t.Error("re-issue kept the serial number")
		}
	}

	if code, _, errs := farmgateRun("certs", "init", "--dir", dir, "--force"); code != 0 {
		t.Fatalf("certs init --force: %s", errs)
	}
	if bytes.Equal(mustRead(t, filepath.Join(dir, "ca.pem")), ca) {
		t.Error("init --force kept the old CA")
	}
}

// Every mistake names the flag.
func TestCertsErrorsNameTheFlag(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code, _, errs := farmgateRun("certs", "init", "--dir", dir); code != 0 {
		t.Fatal(errs)
	}
	empty := t.TempDir()
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"certs"}, "init or issue"},
		{[]string{"certs", "sign"}, "init or issue"},
		{[]string{"certs", "init"}, "--dir"},
		{[]string{"certs", "init", "--dir", t.TempDir(), "--valid-for", "0s"}, "--valid-for"},
		{[]string{"certs", "issue", "--role", "exit", "--id", "x"}, "--dir"},
		{[]string{"certs", "issue", "--dir", dir, "--id", "x"}, "--role"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "origin", "--id", "x"}, "--role"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "exit"}, "--id"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "exit", "--id", "a/b"}, "--out"},
		{[]string{"certs", "issue", "--dir", empty, "--role", "exit", "--id", "x"}, "certs init"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "exit", "--id", "x", "extra"}, "extra"},
		{[]string{"certs", "issue", "--dir", dir, "--role", "exit", "--id", "x", "--bogus"}, "-bogus"},
	}
	for _, tc := range tests {
		code, _, errs := farmgateRun(tc.args...)
		if code != 2 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: status %d, %q; want 2 and %q", strings.Join(tc.args, " "), code, errs, tc.want)
		}
	}
}

func mode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An exit serves its links over mutual TLS or, said explicitly, in
// plaintext; neither, both, or files that do not load stop it with the
// flag named.
func TestExitLinkFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("tok\n"), 0o600)
	for _, args := range [][]string{
		{"certs", "init", "--dir", dir},
		{"certs", "issue", "--dir", dir, "--role", "exit", "--id", "eu-1"},
		{"certs", "issue", "--dir", dir, "--role", "gateway", "--id", "gw-1"},
	} {
		if code, _, errs := farmgateRun(args...); code != 0 {
			t.Fatal(errs)
		}
	}
	base := []string{"exit", "--listen", "127.0.0.1:0", "--id", "eu-1", "--pool", "resi", "--token-file", token}
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name  string
		extra []string
		want  []string
	}{
		{"neither", nil, []string{"--tls-cert", "--tls-key", "--tls-ca", "farmgate certs init", "--role exit", "--insecure-links"}},
		{"both", []string{"--insecure-links", "--tls-cert", p("eu-1.pem")}, []string{"--insecure-links", "contradicts"}},
		{"no key", []string{"--tls-cert", p("eu-1.pem"), "--tls-ca", p("ca.pem")}, []string{"--tls-key: required"}},
		{"key of another node", []string{"--tls-cert", p("eu-1.pem"), "--tls-key", p("gw-1-key.pem"), "--tls-ca", p("ca.pem")},
			[]string{"--tls-key:", "does not match"}},
		{"a gateway's certificate", []string{"--tls-cert", p("gw-1.pem"), "--tls-key", p("gw-1-key.pem"), "--tls-ca", p("ca.pem")},
			[]string{"--tls-cert:", "gw-1.pem"}},
		{"CA missing", []string{"--tls-cert", p("eu-1.pem"), "--tls-key", p("eu-1-key.pem"), "--tls-ca", p("nope.pem")},
			[]string{"--tls-ca:", "nope.pem"}},
	}
	for _, tc := range tests {
		code, _, errs := farmgateRun(append(append([]string(nil), base...), tc.extra...)...)
		if code != 2 {
			t.Errorf("%s: status %d (%s), want 2", tc.name, code, errs)
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%s: %q does not say %q", tc.name, errs, w)
			}
		}
	}
}

// A gateway dials its links over mutual TLS or, said explicitly, in
// plaintext; neither, both, or files that do not load stop it with the
// flag named, before it listens.
func TestGatewayLinkFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("tok\n"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte("customers:\n  - {user: a, password: b, pools: [resi]}\n"), 0o600)
	for _, args := range [][]string{
		{"certs", "init", "--dir", dir},
		{"certs", "issue", "--dir", dir, "--role", "exit", "--id", "eu-1"},
		{"certs", "issue", "--dir", dir, "--role", "gateway", "--id", "gw-1"},
	} {
		if code, _, errs := farmgateRun(args...); code != 0 {
			t.Fatal(errs)
		}
	}
	base := []string{"gateway", "--listen", "127.0.0.1:0", "--admin", "", "--customers", customers, "--token-file", token, "--exit", "eu-1=127.0.0.1:1"}
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name  string
		extra []string
		want  []string
	}{
		{"neither", nil, []string{"--tls-cert", "--tls-key", "--tls-ca", "farmgate certs init", "--role gateway", "--insecure-links"}},
		{"both", []string{"--insecure-links", "--tls-ca", p("ca.pem")}, []string{"--insecure-links", "contradicts"}},
		{"no CA", []string{"--tls-cert", p("gw-1.pem"), "--tls-key", p("gw-1-key.pem")}, []string{"--tls-ca: required"}},
		{"an exit's certificate", []string{"--tls-cert", p("eu-1.pem"), "--tls-key", p("eu-1-key.pem"), "--tls-ca", p("ca.pem")},
			[]string{"--tls-cert:", "eu-1.pem"}},
	}
	for _, tc := range tests {
		code, _, errs := farmgateRun(append(append([]string(nil), base...), tc.extra...)...)
		if code != 2 {
			t.Errorf("%s: status %d (%s), want 2", tc.name, code, errs)
		}
		for _, w := range tc.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%s: %q does not say %q", tc.name, errs, w)
			}
		}
	}
}
