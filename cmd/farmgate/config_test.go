package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The example files operators copy are exactly what the flags say.
func TestExampleConfigFilesAreCurrent(t *testing.T) {
	for _, cmd := range []string{"gateway", "exit"} {
		t.Run(cmd, func(t *testing.T) {
			var b bytes.Buffer
			if err := exampleConfig(&b, cmd); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("..", "..", "deploy", "config", cmd+".yaml")
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, b.Bytes()) {
				t.Fatalf("%s is stale: run `go run ./cmd/farmgate config-example %s > %s`", path, cmd, path)
			}
		})
	}
}

func TestConfigFileEnvAndFlagsPrecedence(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("tok\n"), 0o600)
	cfgPath := filepath.Join(dir, "exit.yaml")
	// Start from the shipped example and fill in the required keys.
	example, err := os.ReadFile(filepath.Join("..", "..", "deploy", "config", "exit.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(example) + "id: from-file\ntoken-file: " + token + "\negress: [127.0.0.1, 127.0.0.2]\ndial-timeout: 3s\nidle-timeout: 1m\n"
	cfg = strings.Replace(cfg, "dial-timeout: 10s\n", "", 1)
	cfg = strings.Replace(cfg, "idle-timeout: 5m0s\n", "", 1)
	cfg = strings.Replace(cfg, "insecure-links: false\n", "insecure-links: true\n", 1)
	os.WriteFile(cfgPath, []byte(cfg), 0o600)

	t.Setenv("FARMGATE_DIAL_TIMEOUT", "4s") // env beats the file
	t.Setenv("FARMGATE_POOL", "dc")
	fs := newExitFlagSet()
	read := exitFlags(fs)
	if _, err := parseFlags(fs, []string{"--config", cfgPath, "--pool", "resi"}); err != nil { // the flag beats env
		t.Fatal(err)
	}
	s, err := read()
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.ID != "from-file" || s.cfg.DialTimeout.String() != "4s" || s.cfg.Pool != "resi" ||
		s.cfg.IdleTimeout.String() != "1m0s" || len(s.cfg.Egress) != 2 || s.cfg.Token != "tok" {
		t.Fatalf("settings %+v", s.cfg)
	}
}
