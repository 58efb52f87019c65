package farmtls_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// Files that do not make an exit's material are refused with an error
// that names the file at fault, at start and on reload; a reload keeps the
// material in use.
func TestBadFilesAreNamed(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	other := newFarm(t)
	goodCert, goodKey := f.issue("good", farmtls.RoleExit, "eu-1")
	_, otherKey := f.issue("other", farmtls.RoleExit, "eu-1")
	gwCert, gwKey := f.issue("gw", farmtls.RoleGateway, "eu-1")
	idCert, idKey := f.issue("id", farmtls.RoleExit, "eu-2")
	foreignCert, foreignKey := other.issue("foreign", farmtls.RoleExit, "eu-1")
	old, oldKey, err := f.ca.Issue(farmtls.RoleExit, "eu-1", time.Now().Add(-3*time.Hour), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expiredCert, expiredKey := f.write("expired.pem", old), f.write("expired-key.pem", oldKey)
	garbage := f.write("garbage.pem", []byte("not PEM\n"))
	missing := f.dir + "/missing.pem"

	tests := []struct {
		name            string
		cert, key, ca   string
		which           farmtls.File
		wantFile, wantS string
	}{
		{"missing certificate", missing, goodKey, f.caFile(), farmtls.CertFile, missing, "no such file"},
		{"certificate not PEM", garbage, goodKey, f.caFile(), farmtls.CertFile, garbage, "no PEM CERTIFICATE"},
		{"key not PEM", goodCert, garbage, f.caFile(), farmtls.KeyFile, garbage, "no PEM private key"},
		{"key of another certificate", goodCert, otherKey, f.caFile(), farmtls.KeyFile, otherKey, "does not match certificate"},
		{"CA not PEM", goodCert, goodKey, garbage, farmtls.CAFile, garbage, "no PEM CERTIFICATE"},
		{"CA of another farm", foreignCert, foreignKey, f.caFile(), farmtls.CertFile, f.caFile(), "unknown authority"},
		{"gateway certificate on an exit", gwCert, gwKey, f.caFile(), farmtls.CertFile, gwCert, "incompatible key usage"},
		{"another exit's certificate", idCert, idKey, f.caFile(), farmtls.CertFile, idCert, `names exit "eu-2", want exit "eu-1"`},
		{"expired", expiredCert, expiredKey, f.caFile(), farmtls.CertFile, expiredCert, "expired"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := farmtls.New(farmtls.Config{CertFile: tc.cert, KeyFile: tc.key, CAFile: tc.ca, Role: farmtls.RoleExit, ID: "eu-1"})
			if err == nil || !strings.Contains(err.Error(), tc.wantFile) || !strings.Contains(err.Error(), tc.wantS) {
				t.Fatalf("New: %v; want an error naming %s and saying %q", err, tc.wantFile, tc.wantS)
			}
			var fe *farmtls.FileError
			if !errors.As(err, &fe) || fe.Which != tc.which {
				t.Errorf("New: %v; want a FileError about the %s file", err, tc.which)
			}
		})
	}

	// On reload, the material in use stays.
	dir := t.TempDir()
	cert, key, ca := dir+"/exit.pem", dir+"/exit-key.pem", dir+"/ca.pem"
	copyFile(t, goodCert, cert)
	copyFile(t, goodKey, key)
	copyFile(t, f.caFile(), ca)
	h, err := farmtls.New(farmtls.Config{CertFile: cert, KeyFile: key, CAFile: ca, Role: farmtls.RoleExit, ID: "eu-1"})
	if err != nil {
		t.Fatal(err)
	}
	serial := h.Leaf().SerialNumber
	e := startExit(t, h.ServerConfig())
	copyFile(t, idCert, cert)
	if err := h.Reload(); err == nil || !strings.Contains(err.Error(), cert) {
		t.Fatalf("Reload with another exit's certificate: %v; want an error naming %s", err, cert)
	}
	gw := f.holder(farmtls.RoleGateway, "gw-1")
	cs, err := roundTrip(t, e.addr, gw.ClientConfig("eu-1"))
	if err != nil || cs.PeerCertificates[0].SerialNumber.Cmp(serial) != 0 {
		t.Fatalf("after a failed reload: err %v, serial %x; want the old certificate %x", err, cs.PeerCertificates[0].SerialNumber, serial)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(to+".tmp", to); err != nil {
		t.Fatal(err)
	}
}

// Watch logs files that do not load, keeps serving the old certificate,
// and takes the files once they are right again.
func TestWatchReportsBadFiles(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	cert, key := f.issue("exit", farmtls.RoleExit, "eu-1")
	var logs syncBuffer
	h, err := farmtls.New(farmtls.Config{CertFile: cert, KeyFile: key, CAFile: f.caFile(), Role: farmtls.RoleExit,
		PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Watch(ctx) }()
	serial := h.Leaf().SerialNumber

	failures := func() int { return strings.Count(logs.String(), "do not load") }
	if err := os.Remove(cert); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return failures() == 1 }, "the missing file logged")
	f.write("exit.pem", []byte("half written"))
	waitFor(t, func() bool { return failures() == 2 }, "the bad file logged")
	if got := logs.String(); !strings.Contains(got, cert) || !strings.Contains(got, "no such file") || !strings.Contains(got, "no PEM") {
		t.Errorf("log does not name %s, missing then not PEM:\n%s", cert, got)
	}
	if h.Leaf().SerialNumber.Cmp(serial) != 0 {
		t.Error("a bad file replaced the certificate")
	}
	f.issue("exit", farmtls.RoleExit, "eu-1")
	waitFor(t, func() bool { return h.Leaf().SerialNumber.Cmp(serial) != 0 }, "the good file loaded")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := farmtls.Config{CertFile: "c", KeyFile: "k", CAFile: "ca", Role: farmtls.RoleExit}
	tests := []struct {
		name string
		edit func(*farmtls.Config)
		want string
	}{
		{"ok", func(*farmtls.Config) {}, ""},
		{"no cert", func(c *farmtls.Config) { c.CertFile = "" }, "cert file"},
		{"no key", func(c *farmtls.Config) { c.KeyFile = "" }, "key file"},
		{"no CA", func(c *farmtls.Config) { c.CAFile = "" }, "CA file"},
		{"bad role", func(c *farmtls.Config) { c.Role = "origin" }, `role "origin"`},
		{"negative poll", func(c *farmtls.Config) { c.PollInterval = -time.Second }, "poll interval"},
	}
	for _, tc := range tests {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tc.name, err, tc.want)
		}
	}
}
