package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The operator flags of #19 name themselves, the value and what would do.
func TestOpsFlagErrors(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("t"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte("customers: []\n"), 0o600)
	missing := filepath.Join(dir, "nope")
	for _, tc := range []struct {
		name string
		load func() error
		want string
	}{
		{"--metrics-customers too many", func() error {
			_, err := loadGatewaySettings([]string{"--token-file", token, "--customers", customers, "--exit", "a=127.0.0.1:1", "--metrics-customers", "5000"})
			return err
		}, "--metrics-customers: want 0 (no per-customer series) to 1000, got 5000"},
		{"--metrics-customers negative", func() error {
			_, err := loadGatewaySettings([]string{"--token-file", token, "--customers", customers, "--exit", "a=127.0.0.1:1", "--metrics-customers", "-1"})
			return err
		}, "--metrics-customers: want 0 (no per-customer series) to 1000, got -1"},
		{"exit --admin-token-file missing", func() error {
			fs := newExitFlagSet()
			read := exitFlags(fs)
			if _, err := parseFlags(fs, []string{"--id", "x", "--token-file", token, "--insecure-links", "--admin", "127.0.0.1:0", "--admin-token-file", missing}); err != nil {
				return err
			}
			_, err := read()
			return err
		}, "--admin-token-file: open " + missing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.load()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// An exit's admin listener is set like any other setting: from the
// environment, or from the config file.
func TestExitAdminFromEnvAndConfig(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("t"), 0o600)
	adminToken := filepath.Join(dir, "admin-token")
	os.WriteFile(adminToken, []byte("admin-secret\n"), 0o600)
	cfg := filepath.Join(dir, "exit.yaml")
	os.WriteFile(cfg, []byte("id: x\ninsecure-links: true\nadmin-token-file: "+adminToken+"\n"), 0o600)
	t.Setenv("FARMGATE_ADMIN", "127.0.0.1:9191")
	fs := newExitFlagSet()
	read := exitFlags(fs)
	if _, err := parseFlags(fs, []string{"--config", cfg, "--token-file", token}); err != nil {
		t.Fatal(err)
	}
	s, err := read()
	if err != nil {
		t.Fatal(err)
	}
	if s.admin != "127.0.0.1:9191" || s.adminTok != "admin-secret" {
		t.Errorf("admin %q token %q, want 127.0.0.1:9191 from FARMGATE_ADMIN and the token from the file's admin-token-file", s.admin, s.adminTok)
	}
}
