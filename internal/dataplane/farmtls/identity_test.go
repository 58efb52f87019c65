package farmtls_test

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// A node certificate names its role and id, whatever characters the id
// holds, and carries the EKU of its role.
func TestIssueNamesTheNode(t *testing.T) {
	t.Parallel()
	ca, err := farmtls.NewCA("test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		role farmtls.Role
		id   string
		uri  string
		eku  x509.ExtKeyUsage
	}{
		{farmtls.RoleExit, "eu-1", "farmgate://exit/eu-1", x509.ExtKeyUsageServerAuth},
		{farmtls.RoleExit, "de frankfurt#1", "farmgate://exit/de%20frankfurt%231", x509.ExtKeyUsageServerAuth},
		{farmtls.RoleExit, "us/east_1?x", "farmgate://exit/us/east_1%3Fx", x509.ExtKeyUsageServerAuth},
		{farmtls.RoleExit, "Zürich", "farmgate://exit/Z%C3%BCrich", x509.ExtKeyUsageServerAuth},
		{farmtls.RoleGateway, "gw-eu-1", "farmgate://gateway/gw-eu-1", x509.ExtKeyUsageClientAuth},
	}
	for _, tc := range tests {
		certPEM, _, err := ca.Issue(tc.role, tc.id, time.Now(), 2*time.Hour)
		if err != nil {
			t.Fatalf("Issue(%s, %q): %v", tc.role, tc.id, err)
		}
		b, _ := pem.Decode(certPEM)
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		role, id, err := farmtls.Identity(cert)
		if err != nil || role != tc.role || id != tc.id {
			t.Errorf("Identity = %s %q %v; want %s %q", role, id, err, tc.role, tc.id)
		}
		if len(cert.URIs) != 1 || cert.URIs[0].String() != tc.uri {
			t.Errorf("URI SANs %v, want %s", cert.URIs, tc.uri)
		}
		if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != tc.eku {
			t.Errorf("%s %q: EKU %v, want %v", tc.role, tc.id, cert.ExtKeyUsage, tc.eku)
		}
		if !cert.NotAfter.Equal(ca.Cert.NotAfter) {
			t.Errorf("certificate outlives its CA: %s, CA %s", cert.NotAfter, ca.Cert.NotAfter)
		}
	}
	for _, bad := range []struct {
		role farmtls.Role
		id   string
	}{{"origin", "x"}, {farmtls.RoleExit, ""}, {farmtls.RoleExit, "  "}, {farmtls.RoleExit, "\xff"}} {
		if _, _, err := ca.Issue(bad.role, bad.id, time.Now(), time.Hour); err == nil {
			t.Errorf("Issue(%q, %q): no error", bad.role, bad.id)
		}
	}
}

// A certificate's CA parses back from the PEM that CertPEM and KeyPEM
// write, and signs with the same key.
func TestParseCA(t *testing.T) {
	t.Parallel()
	ca, err := farmtls.NewCA("test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := farmtls.ParseCA(ca.CertPEM(), key)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Cert.Equal(ca.Cert) {
		t.Error("parsed CA certificate differs")
	}
	other, _ := farmtls.NewCA("other", time.Now(), time.Hour)
	otherKey, _ := other.KeyPEM()
	if _, err := farmtls.ParseCA(ca.CertPEM(), otherKey); err == nil {
		t.Error("ParseCA with another CA's key: no error")
	}
}

// Every id survives the trip through the URI SAN.
func FuzzNodeURI(f *testing.F) {
	for _, s := range []string{"eu-1", "a/b", "%41", "..", "x?y#z", "Zürich", " a ", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if id == "" {
			return
		}
		for _, role := range []farmtls.Role{farmtls.RoleExit, farmtls.RoleGateway} {
			s := farmtls.NodeURI(role, id).String()
			for i := 0; i < len(s); i++ {
				if s[i] < 0x21 || s[i] > 0x7e {
					t.Fatalf("NodeURI(%q) = %q: not printable ASCII (an IA5String SAN)", id, s)
				}
			}
			u, err := url.Parse(s)
			if err != nil {
				t.Fatalf("url.Parse(%q): %v", s, err)
			}
			gotRole, gotID, err := farmtls.IdentityOfURI(u)
			if err != nil || gotRole != role || gotID != id {
				t.Fatalf("IdentityOfURI(%s) = %s %q %v; want %s %q", s, gotRole, gotID, err, role, id)
			}
		}
	})
}
