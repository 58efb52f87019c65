package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

// customersRedisPrefix returns a key prefix of this test's own on the
// Redis at 127.0.0.1:6379, deleted at cleanup; it skips without Redis,
// or fails when CI=true.
func customersRedisPrefix(t *testing.T) string {
	t.Helper()
	_, prefix := redistest.Shared(t)
	return prefix
}

func TestCustomersCommand(t *testing.T) {
	// Not parallel: it replaces customersStdin.
	stores := map[string][]string{
		"file":  {"--file", filepath.Join(t.TempDir(), "customers.yaml")},
		"redis": {"--redis", "127.0.0.1:6379", "--redis-prefix", customersRedisPrefix(t)},
	}
	for name, store := range stores {
		t.Run(name, func(t *testing.T) {
			run := func(stdin string, args ...string) (string, error) {
				customersStdin = strings.NewReader(stdin)
				t.Cleanup(func() { customersStdin = os.Stdin })
				var out, errb bytes.Buffer
				err := runCustomers(t.Context(), append(args, store...), &out, &errb)
				return out.String(), err
			}
			if _, err := run("s3cret\n", "add", "alice", "--pools", "resi,DC", "--password-stdin", "--max-conns", "5",
				"--rate", "600/m", "--quota", "1MB", "--allow-ips", "203.0.113.0/24"); err != nil {
				t.Fatalf("add: %v", err)
			}
			out, err := run("", "show", "alice", "--json")
			if err != nil {
				t.Fatal(err)
			}
			var shown map[string]any
			if err := json.Unmarshal([]byte(out), &shown); err != nil {
				t.Fatalf("show --json: %v: %s", err, out)
			}
			if shown["max_conns"] != 5.0 || shown["enabled"] != true || shown["default_pool"] != "resi" ||
				shown["rate_per_sec"] != 10.0 || shown["quota_bytes"] != 1e6 { // 600/m, 1MB
				t.Errorf("show --json = %s", out)
			}
			if strings.Contains(out, "argon2") || strings.Contains(out, "s3cret") {
				t.Errorf("show prints the password or its hash: %s", out)
			}
			tests := []struct {
				name    string
				args    []string
				wantErr string
				usage   bool
			}{
				{"duplicate user", []string{"add", "alice", "--pools", "resi", "--password-hash", "$2a$04$abcdefghijklmnopqrstuuJ3Gz4Dz2Ckq1qKn0gGgn8m3ezn2hmR6"}, "already exists", false},
				{"malformed CIDR", []string{"add", "bob", "--pools", "resi", "--password-stdin", "--allow-ips", "10.0.0.0/33"}, `allow_ips[0]: "10.0.0.0/33" is not an IP address or CIDR`, false},
				{"unknown pool", []string{"add", "bob", "--pools", "resi,mobile", "--password-stdin", "--pools-known", "resi,dc"}, `pools[1]: unknown pool "mobile"`, false},
				{"bad user name", []string{"add", "a-b", "--pools", "resi", "--password-stdin"}, `user: "a-b" must be 1-64`, false},
				{"unknown user", []string{"set", "nobody", "--max-conns", "1"}, "unknown customer", false},
				{"no password", []string{"add", "bob", "--pools", "resi"}, "want --password-stdin or --password-hash", true},
				{"bad flag", []string{"add", "bob", "--nope"}, "--nope: unknown flag", true},
				{"quota with a unit", []string{"add", "bob", "--pools", "resi", "--password-stdin", "--quota", "100XB"}, `--quota: "100XB" is not a size; use bytes or a unit, e.g. 100GB`, true},
				{"rate with a bad unit", []string{"add", "bob", "--pools", "resi", "--password-stdin", "--rate", "5/day"}, `--rate: "5/day" is not a rate; use requests per second, e.g. 5, 5/s or 300/m`, true},
				{"unknown command", []string{"frobnicate"}, "unknown command", true},
			}
			for _, tc := range tests {
				_, err := run("pw\n", tc.args...)
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.wantErr)
				}
				if errors.As(err, new(usageError)) != tc.usage {
					t.Errorf("%s: usageError = %v, want %v", tc.name, !tc.usage, tc.usage)
				}
			}
			if _, err := run("", "disable", "alice"); err != nil {
				t.Fatal(err)
			}
			if _, err := run("", "set", "alice", "--max-conns", "9"); err != nil {
				t.Fatal(err)
			}
			out, err = run("", "list", "--json")
			if err != nil {
				t.Fatal(err)
			}
			var list []map[string]any
			if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0]["enabled"] != false || list[0]["max_conns"] != 9.0 {
				t.Fatalf("list --json = %s (%v)", out, err)
			}
			if _, err := run("", "enable", "alice"); err != nil {
				t.Fatal(err)
			}
			// The stored customer logs in with the password given on stdin.
			if name == "file" {
				s, err := auth.LoadFile(store[1])
				if err != nil {
					t.Fatal(err)
				}
				if _, err := s.Authenticate(t.Context(), "alice", "s3cret"); err != nil {
					t.Errorf("Authenticate from the written file: %v", err)
				}
			} else {
				out, err := run("", "usage", "alice", "--json")
				if err != nil || !strings.Contains(out, `"this_month":{"up":0,"down":0}`) {
					t.Errorf("usage --json = %s, %v", out, err)
				}
			}
			if _, err := run("", "delete", "alice"); err != nil {
				t.Fatal(err)
			}
			if _, err := run("", "show", "alice"); !errors.Is(err, auth.ErrUnknownCustomer) {
				t.Errorf("show after delete = %v", err)
			}
		})
	}
}
