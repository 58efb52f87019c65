package main

import (
	"bytes"
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/farmgate/farmgate/auth"
)

// The usage text names only flags the command has, in the form its --help
// gives, and every command it lists exists.
func TestUsageAgreesWithHelp(t *testing.T) {
	t.Parallel()
	flagSets := map[string]func() *flag.FlagSet{
		"gateway": func() *flag.FlagSet { fs := newGatewayFlagSet(); gatewayFlags(fs); return fs },
		"exit":    func() *flag.FlagSet { fs := newExitFlagSet(); exitFlags(fs); return fs },
	}
	cmdLine := regexp.MustCompile(`^  farmgate (\S+)`)
	flagRef := regexp.MustCompile(`--([a-z][a-z0-9-]*)(?: ([A-Z][A-Z=:_,.]*))?`)
	var cmd string
	seen := map[string]bool{}
	for _, line := range strings.Split(usage, "\n") {
		if m := cmdLine.FindStringSubmatch(line); m != nil {
			cmd = m[1]
			seen[cmd] = true
		} else if !strings.HasPrefix(line, "     ") {
			cmd = ""
		}
		mk, ok := flagSets[cmd]
		if !ok {
			continue
		}
		fs := mk()
		for _, m := range flagRef.FindAllStringSubmatch(line, -1) {
			f := fs.Lookup(m[1])
			if f == nil {
				t.Errorf("usage: farmgate %s --%s: no such flag", cmd, m[1])
				continue
			}
			if m[1] == "exit" && !strings.Contains(f.Usage, m[2]) {
				t.Errorf("usage says --exit %s, --help says %q", m[2], f.Usage)
			}
		}
	}
	for _, c := range []string{"demo", "gateway", "exit", "customers", "config-example", "gossip-key", "version", "help"} {
		if !seen[c] {
			t.Errorf("usage does not list farmgate %s", c)
		}
	}
	for c := range seen {
		var out, errb bytes.Buffer
		run([]string{c, "--help"}, &out, &errb)
		if strings.Contains(errb.String(), "unknown command") {
			t.Errorf("usage lists farmgate %s, which does not exist", c)
		}
	}
}

func TestGossipKeyIsAKey(t *testing.T) {
	t.Parallel()
	keys := map[string]bool{}
	for range 2 {
		var out, errb bytes.Buffer
		if code := run([]string{"gossip-key"}, &out, &errb); code != 0 {
			t.Fatalf("gossip-key: exit %d: %s", code, errb.String())
		}
		line := strings.TrimSuffix(out.String(), "\n")
		key, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(key) != 32 || memberlist.ValidateKey(key) != nil {
			t.Fatalf("gossip-key printed %q: %d bytes, %v", out.String(), len(key), err)
		}
		keys[line] = true
	}
	if len(keys) != 2 {
		t.Error("two gossip-key runs printed the same key")
	}
}

// The example customers file has every field of auth.CustomerRecord, and
// the gateway reads it.
func TestCustomersExampleDocumentsEveryField(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := exampleConfig(&b, "customers"); err != nil {
		t.Fatal(err)
	}
	for f := range reflect.TypeFor[auth.CustomerRecord]().Fields() {
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !regexp.MustCompile(`(?m)^\s*#?\s*(- )?` + key + `:`).Match(b.Bytes()) {
			t.Errorf("customers example lacks %s", key)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for f := range reflect.TypeFor[auth.CustomerRecord]().Fields() {
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !bytes.Contains(readme, []byte("| `"+key+"` |")) {
			t.Errorf("README.md's customers table lacks %s", key)
		}
	}
	s, err := auth.ParseFile(b.Bytes(), "example")
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	c, ok := s.Customer("alice")
	if !ok || c.MaxConns != 100 || c.QuotaBytes != 100e9 || len(c.AllowIPs) != 2 || c.Expires.IsZero() || c.DefaultPool != "resi" {
		t.Errorf("example customer %+v", c)
	}
}
