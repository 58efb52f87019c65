package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// pki is a farm CA of one test, its files in the test's temporary
// directory, minted in-process (TestExitServesMutualTLS runs `farmgate
// certs` itself): what the farmgate processes a test starts need for
// their gateway↔exit links.
type pki struct {
	t   testing.TB
	dir string
	ca  *farmtls.CA
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	ca, err := farmtls.NewCA("e2e farm CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k := &pki{t: t, dir: t.TempDir(), ca: ca}
	k.write("ca.pem", ca.CertPEM())
	return k
}

func (k *pki) caFile() string { return filepath.Join(k.dir, "ca.pem") }

// write replaces file name through a rename, as `farmgate certs issue`
// and an operator's tools do: a reader sees the old file or the new one.
func (k *pki) write(name string, data []byte) string {
	k.t.Helper()
	p := filepath.Join(k.dir, name)
	if err := os.WriteFile(p+".tmp", data, 0o600); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(p+".tmp", p); err != nil {
		k.t.Fatal(err)
	}
	return p
}

// issue writes a certificate and key for role and id (ID.pem, ID-key.pem,
// replacing earlier ones) and returns the --tls-* flags that use them
// with this CA.
func (k *pki) issue(role farmtls.Role, id string) []string {
	k.t.Helper()
	cert, key, err := k.ca.Issue(role, id, time.Now(), time.Hour)
	if err != nil {
		k.t.Fatal(err)
	}
	keyFile := k.write(id+"-key.pem", key)
	certFile := k.write(id+".pem", cert)
	return []string{"--tls-cert", certFile, "--tls-key", keyFile, "--tls-ca", k.caFile()}
}

// exit is the --tls-* flags of exit id; gateway those of a gateway.
func (k *pki) exit(id string) []string { return k.issue(farmtls.RoleExit, id) }
func (k *pki) gateway() []string       { return k.issue(farmtls.RoleGateway, "gw") }

// tls returns a farmgate command line (args[0] is "exit" or "gateway")
// with the --tls-* flags of its node appended: an exit's certificate names
// its --id.
func (k *pki) tls(args ...string) []string {
	k.t.Helper()
	if args[0] == "gateway" {
		return append(args, k.gateway()...)
	}
	return append(args, k.exit(flagOf(args, "id"))...)
}
