package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// certs runs `farmgate certs ARGS` and fails the test if it fails.
func certs(t *testing.T, args ...string) {
	t.Helper()
	bin := farmgateBin(t) // built before the clock starts
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"certs"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("farmgate certs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// healthOver sends the gateways' health check on a TLS link made with cfg
// and returns the status, or the error that ended the link.
func healthOver(t *testing.T, addr, token string, cfg *tls.Config) (int, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return healthOn(c, bufio.NewReader(c), token)
}

// healthOn sends one health check on an open link.
func healthOn(c net.Conn, br *bufio.Reader, token string) (int, error) {
	if _, err := c.Write([]byte("GET /farmgate/health HTTP/1.1\r\nHost: exit\r\nProxy-Authorization: Bearer " + token + "\r\n\r\n")); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var h struct {
		MaxTunnels int `json:"max_tunnels"`
	}
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.MaxTunnels == 0 {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// presenting is a client that presents the pair at prefix and trusts any
// server: how someone without a gateway's certificate of the farm knocks.
func presenting(t *testing.T, prefix string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if prefix != "" {
		pair, err := tls.LoadX509KeyPair(prefix+".pem", prefix+"-key.pem")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// servedSerial makes a full handshake (no session to resume) with the
// gateway's certificate and returns the serial of the exit's certificate.
func servedSerial(t *testing.T, addr string, gw *farmtls.Holder, exitID string) *big.Int {
	t.Helper()
	cfg := gw.ClientConfig(exitID)
	cfg.ClientSessionCache = nil
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatalf("handshake with the exit: %v", err)
	}
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

func fileSerial(t *testing.T, path string) *big.Int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := pem.Decode(b)
	if p == nil {
		t.Fatalf("%s: no PEM", path)
	}
	cert, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber
}

// An exit started with the farm's certificates (made by `farmgate certs`)
// serves its links over mutual TLS: it refuses a client without a
// certificate and one with a certificate of another CA, answers a gateway
// of the farm, is refused by a gateway that expects another exit, and
// serves a certificate re-issued on disk from the next handshake, without
// a restart and without cutting the link already up.
func TestExitServesMutualTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki, otherPKI := filepath.Join(dir, "pki"), filepath.Join(dir, "other")
	certs(t, "init", "--dir", pki)
	certs(t, "issue", "--dir", pki, "--role", "exit", "--id", "tls-1")
	certs(t, "issue", "--dir", pki, "--role", "gateway", "--id", "gw-1")
	certs(t, "init", "--dir", otherPKI)
	certs(t, "issue", "--dir", otherPKI, "--role", "gateway", "--id", "gw-1")
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("tls-token\n"), 0o600)

	addr := freeAddr(t)
	exit := start(t, "exit", "--listen", addr, "--id", "tls-1", "--pool", "resi", "--token-file", token,
		"--tls-cert", filepath.Join(pki, "tls-1.pem"), "--tls-key", filepath.Join(pki, "tls-1-key.pem"),
		"--tls-ca", filepath.Join(pki, "ca.pem"))
	waitListening(t, addr)

	gw, err := farmtls.New(farmtls.Config{CertFile: filepath.Join(pki, "gw-1.pem"), KeyFile: filepath.Join(pki, "gw-1-key.pem"),
		CAFile: filepath.Join(pki, "ca.pem"), Role: farmtls.RoleGateway})
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"no client certificate", presenting(t, ""), "certificate required"},
		{"a gateway certificate of another CA", presenting(t, filepath.Join(otherPKI, "gw-1")), "unknown certificate authority"},
		{"an exit's own certificate as a client", presenting(t, filepath.Join(pki, "tls-1")), "bad certificate"},
		{"a gateway that expects another exit", gw.ClientConfig("tls-2"), `names exit "tls-1", want exit "tls-2"`},
	}
	for _, tc := range refused {
		status, err := healthOver(t, addr, "tls-token", tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: health status %d, err %v; want the link refused (%q)", tc.name, status, err, tc.want)
		}
	}
	if status, err := healthOver(t, addr, "tls-token", gw.ClientConfig("tls-1")); err != nil || status != 200 {
		t.Fatalf("gateway of the farm: health status %d, err %v; want 200\n%s", status, err, exit.output())
	}
	// Inside TLS the token is still the second factor.
	if status, err := healthOver(t, addr, "wrong", gw.ClientConfig("tls-1")); err != nil || status != http.StatusProxyAuthRequired {
		t.Errorf("gateway of the farm with a wrong token: status %d, err %v; want 407", status, err)
	}

	// A link that stays up across the rotation.
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	live := tls.Client(raw, gw.ClientConfig("tls-1"))
	t.Cleanup(func() { live.Close() })
	live.SetDeadline(time.Now().Add(60 * time.Second))
	liveR := bufio.NewReader(live)
	if status, err := healthOn(live, liveR, "tls-token"); err != nil || status != 200 {
		t.Fatalf("live link: %d %v", status, err)
	}

	before := servedSerial(t, addr, gw, "tls-1")
	if want := fileSerial(t, filepath.Join(pki, "tls-1.pem")); before.Cmp(want) != 0 {
		t.Fatalf("served serial %x, file %x", before, want)
	}
	certs(t, "issue", "--dir", pki, "--role", "exit", "--id", "tls-1")
	rotated := fileSerial(t, filepath.Join(pki, "tls-1.pem"))
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for servedSerial(t, addr, gw, "tls-1").Cmp(rotated) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s the exit still serves %x, not the re-issued %x\n%s", before, rotated, exit.output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("re-issued certificate served %.1fs after it was written (the exit polls every 5s)", time.Since(start).Seconds())
	if status, err := healthOn(live, liveR, "tls-token"); err != nil || status != 200 {
		t.Errorf("the link up before the rotation: %d %v; want it to go on", status, err)
	}
	// A new link still resumes the gateway's session.
	cfg := gw.ClientConfig("tls-1")
	raw, err = net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, cfg)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if status, err := healthOn(c, bufio.NewReader(c), "tls-token"); err != nil || status != 200 || !c.ConnectionState().DidResume {
		t.Errorf("new link after the rotation: %d %v, resumed %v; want 200 and resumed", status, err, c.ConnectionState().DidResume)
	}
	// SIGHUP re-reads the files at once: a broken certificate is refused,
	// named in the log, and the one in use stays.
	certFile := filepath.Join(pki, "tls-1.pem")
	os.WriteFile(certFile, []byte("not a certificate\n"), 0o644)
	exit.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(exit.output(), "reload tls files failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload error after SIGHUP with a broken certificate:\n%s", exit.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(exit.output(), certFile) {
		t.Errorf("the reload error does not name %s:\n%s", certFile, exit.output())
	}
	if got := servedSerial(t, addr, gw, "tls-1"); got.Cmp(rotated) != 0 {
		t.Errorf("after a broken certificate the exit serves %x, want the last good one %x", got, rotated)
	}
	certs(t, "issue", "--dir", pki, "--role", "exit", "--id", "tls-1")
	exit.cmd.Process.Signal(syscall.SIGHUP)
	fixed := fileSerial(t, certFile)
	deadline = time.Now().Add(20 * time.Second)
	for servedSerial(t, addr, gw, "tls-1").Cmp(fixed) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP the exit does not serve the re-issued %x\n%s", fixed, exit.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// An exit refuses to start with neither TLS files nor --insecure-links,
// and warns loudly when its links are plaintext.
func TestExitLinksAreSecureByDefault(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("t\n"), 0o600)
	bin := farmgateBin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "exit", "--listen", "127.0.0.1:0", "--id", "x", "--pool", "resi", "--token-file", token)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("exit without TLS files or --insecure-links started:\n%s", out)
	}
	for _, want := range []string{"--tls-cert", "--tls-key", "--tls-ca", "farmgate certs init", "farmgate certs issue", "--insecure-links"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("refusal does not name %q:\n%s", want, out)
		}
	}

	addr := freeAddr(t)
	p := start(t, "exit", "--listen", addr, "--id", "x", "--pool", "resi", "--token-file", token, "--insecure-links")
	waitListening(t, addr)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.output(), "exit serving") {
		if time.Now().After(deadline) {
			t.Fatalf("no 'exit serving' line:\n%s", p.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := p.output(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "INSECURE LINKS") || !strings.Contains(out, "links=plaintext") {
		t.Errorf("plaintext links without a loud warning:\n%s", out)
	}
}
