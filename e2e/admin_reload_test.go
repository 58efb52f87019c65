package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// After SIGHUP re-reads the customer file, the admin API answers from the
// new customers: /api/customers lists who the file now holds, and a new
// customer's usage is found. Before, it kept reading the store the gateway
// started with.
func TestSighupAdminReadsTheNewCustomers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("admin-reload-token"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	write := func(users ...string) {
		s := "customers:\n"
		for _, u := range users {
			s += "  - {user: " + u + ", password: pw, pools: [resi]}\n"
		}
		tmp := customers + ".tmp"
		os.WriteFile(tmp, []byte(s), 0o600)
		os.Rename(tmp, customers)
	}
	write("alice")
	gw, adminAddr := freeAddr(t), freeAddr(t)
	g := start(t, newPKI(t).tls("gateway", "--listen", gw, "--admin", adminAddr, "--customers", customers, "--token-file", token,
		"--exit", "a1="+freeAddr(t))...)
	waitListening(t, adminAddr)
	users := func() ([]string, error) {
		status, body := adminGet(t, "http://"+adminAddr+"/api/customers", "")
		var list []struct{ User string }
		if err := json.Unmarshal([]byte(body), &list); status != 200 || err != nil {
			return nil, fmt.Errorf("/api/customers: %d %s", status, body)
		}
		var out []string
		for _, c := range list {
			out = append(out, c.User)
		}
		return out, nil
	}
	if u, err := users(); err != nil || len(u) != 1 || u[0] != "alice" {
		t.Fatalf("before the reload: %v %v", u, err)
	}
	write("bob", "carol")
	g.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "/api/customers to list the reloaded file's customers", func() error {
		u, err := users()
		if err != nil {
			return err
		}
		if fmt.Sprint(u) != "[bob carol]" {
			return fmt.Errorf("lists %v, want [bob carol]; log:\n%s", u, g.output())
		}
		return nil
	})
	if status, body := adminGet(t, "http://"+adminAddr+"/api/customers/bob/usage", ""); status != 200 {
		t.Errorf("usage of bob, added by the reload: %d %s", status, body)
	}
	if status, _ := adminGet(t, "http://"+adminAddr+"/api/customers/alice/usage", ""); status != 404 {
		t.Errorf("usage of alice, removed by the reload: %d, want 404", status)
	}
}
