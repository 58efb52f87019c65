package farmtls_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// The exit accepts only gateways of its farm, and a gateway only the exit
// it meant to reach.
func TestLinkHandshake(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	other := newFarm(t)
	exitH := f.holder(farmtls.RoleExit, "eu-1")
	gw := f.holder(farmtls.RoleGateway, "gw-1")
	e := startExit(t, exitH.ServerConfig())

	noCert := gw.ClientConfig("eu-1").Clone()
	noCert.GetClientCertificate = nil
	noCert.ClientSessionCache = nil // a session of the gateway would stand for its certificate
	tests := []struct {
		name     string
		client   *tls.Config
		ok       bool
		clientIs string // in the client's error
		exitIs   string // in the exit's handshake error
	}{
		{"gateway of the farm", gw.ClientConfig("eu-1"), true, "", ""},
		{"no client certificate", noCert, false, "certificate required", "didn't provide a certificate"},
		{"gateway of another farm", presenting(t, other, farmtls.RoleGateway, "gw-1"), false,
			"unknown certificate authority", "unknown authority"},
		{"exit certificate as a client", presenting(t, f, farmtls.RoleExit, "eu-9"), false,
			"bad certificate", "incompatible key usage"},
		{"exit that names another id", gw.ClientConfig("eu-2"), false, `names exit "eu-1", want exit "eu-2"`, ""},
	}
	for _, tc := range tests {
		before := len(e.handshakeErrors())
		_, err := roundTrip(t, e.addr, tc.client)
		if tc.ok != (err == nil) {
			t.Errorf("%s: round trip err = %v, want ok=%v", tc.name, err, tc.ok)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), tc.clientIs) {
			t.Errorf("%s: client error %q, want it to say %q", tc.name, err, tc.clientIs)
		}
		if tc.exitIs != "" {
			waitFor(t, func() bool { return len(e.handshakeErrors()) > before }, "the exit's handshake error")
			if got := e.handshakeErrors()[before].Error(); !strings.Contains(got, tc.exitIs) {
				t.Errorf("%s: exit error %q, want it to say %q", tc.name, got, tc.exitIs)
			}
		}
	}

	// A gateway refuses an exit of another farm, even one with the right id.
	impostor := startExit(t, other.holder(farmtls.RoleExit, "eu-1").ServerConfig())
	if _, err := roundTrip(t, impostor.addr, gw.ClientConfig("eu-1")); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("exit of another farm: err = %v, want unknown authority", err)
	}
}

// presenting is a client that presents a certificate of f for role and id
// and trusts any exit.
func presenting(t *testing.T, f *farm, role farmtls.Role, id string) *tls.Config {
	cert, key := f.issue("client-"+id, role, id)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{pair}}
}

// The second link to an exit resumes the first's session: no certificate
// exchange, one round trip.
func TestLinkResumes(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	e := startExit(t, f.holder(farmtls.RoleExit, "eu-1").ServerConfig())
	gw := f.holder(farmtls.RoleGateway, "gw-1")
	for i, want := range []bool{false, true, true} {
		// A new config per dial, as a gateway may make: the cache is the
		// holder's.
		cs, err := roundTrip(t, e.addr, gw.ClientConfig("eu-1"))
		if err != nil {
			t.Fatalf("link %d: %v", i, err)
		}
		if cs.DidResume != want || cs.Version != tls.VersionTLS13 {
			t.Errorf("link %d: resumed %v, version %x; want resumed %v, TLS 1.3", i, cs.DidResume, cs.Version, want)
		}
		if len(cs.PeerCertificates) == 0 {
			t.Errorf("link %d: no exit certificate in the state", i)
		}
	}
	// A resumed session is checked again: a gateway that expects another
	// exit at this address refuses it.
	if _, err := roundTrip(t, e.addr, gw.ClientConfig("eu-2")); err == nil {
		t.Error("resumed session to an exit that names another id: accepted")
	}
}

// A certificate rotated on disk is served from the next handshake on, after
// Reload or when Watch sees it; the links already up keep working.
func TestRotation(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"Reload", "Watch"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			f := newFarm(t)
			cert, key := f.issue("exit", farmtls.RoleExit, "eu-1")
			h, err := farmtls.New(farmtls.Config{CertFile: cert, KeyFile: key, CAFile: f.caFile(),
				Role: farmtls.RoleExit, ID: "eu-1", PollInterval: 20 * time.Millisecond, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			if how == "Watch" {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); h.Watch(ctx) }()
				t.Cleanup(func() {
					cancel()
					<-done
				})
			}
			e := startExit(t, h.ServerConfig())
			gw := f.holder(farmtls.RoleGateway, "gw-1")
			live := dialLive(t, e.addr, gw.ClientConfig("eu-1"))
			first := live.ConnectionState().PeerCertificates[0].SerialNumber
			if _, err := roundTrip(t, e.addr, gw.ClientConfig("eu-1")); err != nil {
				t.Fatal(err)
			}

			f.issue("exit", farmtls.RoleExit, "eu-1")
			if how == "Reload" {
				if err := h.Reload(); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, func() bool { return h.Leaf().SerialNumber.Cmp(first) != 0 }, "the new certificate")
			// The gateway's session cache would resume the old session,
			// with the old certificate in it: a fresh gateway sees what
			// a full handshake serves.
			fresh := f.holder(farmtls.RoleGateway, "gw-2")
			cs, err := roundTrip(t, e.addr, fresh.ClientConfig("eu-1"))
			if err != nil {
				t.Fatal(err)
			}
			if got := cs.PeerCertificates[0].SerialNumber; got.Cmp(h.Leaf().SerialNumber) != 0 || got.Cmp(first) == 0 {
				t.Errorf("served serial %x after rotation; first %x, loaded %x", got, first, h.Leaf().SerialNumber)
			}
			// The old gateway's next link resumes: the exit's ticket keys
			// outlive the rotation.
			if cs, err := roundTrip(t, e.addr, gw.ClientConfig("eu-1")); err != nil || !cs.DidResume {
				t.Errorf("link after rotation: resumed %v, err %v", cs.DidResume, err)
			}
			echo(t, live)
		})
	}
}

// dialLive opens a link that stays up for the test.
func dialLive(t *testing.T, addr string, cfg *tls.Config) *tls.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, cfg)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	echo(t, c)
	return c
}

func echo(t *testing.T, c *tls.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatalf("live link: %v", err)
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil || b[0] != 'x' {
		t.Fatalf("live link: read %q, %v", b, err)
	}
}
