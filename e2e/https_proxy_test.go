package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// selfSigned writes a certificate for 127.0.0.1 and localhost, and its
// key, to cert and key, and returns its serial.
func selfSigned(t *testing.T, cert, key string) *big.Int {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "farmgate test proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	// Written beside and renamed, as an operator's tooling would, so the
	// gateway never reads half a file.
	write := func(path string, block *pem.Block) {
		if err := os.WriteFile(path+".new", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	write(cert, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	write(key, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	return serial
}

// servedSerialOn returns the serial of the certificate the customer port
// presents now.
func servedSerialOn(t *testing.T, addr string) *big.Int {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("tls to the customer port: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber
}

// The customer port speaks TLS to customers whose proxy URL is https://,
// beside plain HTTP and SOCKS5, and takes a new certificate on SIGHUP.
func TestHTTPSProxyPort(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "proxy.crt"), filepath.Join(dir, "proxy.key")
	first := selfSigned(t, cert, key)
	f := startCmdFarmWith(t, []cmdExit{{"x1", "DE"}}, "--proxy-tls-cert", cert, "--proxy-tls-key", key)
	origin := "http://" + f.origin.HTTPAddr + "/ip"
	httpsOrigin := "https://" + f.origin.TLSAddr + "/ip"

	curl := func(args ...string) string {
		t.Helper()
		args = append([]string{"-sS", "--max-time", "15", "-o", "/dev/null", "-w", "%{http_code}"}, args...)
		out, err := exec.Command("curl", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	proxy := "https://127.0.0.1:" + portOf(f.gw)
	t.Run("curl, request", func(t *testing.T) {
		if code := curl("--proxy", proxy, "--proxy-cacert", cert, "--proxy-user", "demo:demo", origin); code != "200" {
			t.Fatalf("status %s", code)
		}
	})
	t.Run("curl, tunnel", func(t *testing.T) {
		if code := curl("--proxy", proxy, "--proxy-cacert", cert, "--proxy-user", "demo:demo", "-k", httpsOrigin); code != "200" {
			t.Fatalf("status %s", code)
		}
		if code := curl("-p", "--proxy", proxy, "--proxy-cacert", cert, "--proxy-user", "demo:demo", origin); code != "200" {
			t.Fatalf("CONNECT for http://: status %s", code)
		}
	})
	t.Run("curl, wrong password", func(t *testing.T) {
		if code := curl("--proxy", proxy, "--proxy-cacert", cert, "--proxy-user", "demo:nope", origin); code != "407" {
			t.Fatalf("status %s, want 407", code)
		}
	})
	t.Run("curl, plain HTTP on the same port", func(t *testing.T) {
		if code := curl("--proxy", "http://"+f.gw, "--proxy-user", "demo:demo", origin); code != "200" {
			t.Fatalf("status %s", code)
		}
	})
	t.Run("garbage after a TLS first byte", func(t *testing.T) {
		// A customer whose bytes start like a handshake and are not one
		// loses their connection; the port and the exit are unharmed.
		for _, junk := range [][]byte{{0x16, 3, 1, 0xff, 0xff, 'x', 'y'}, {0x16}, append([]byte{0x16, 3, 3, 0, 5}, "hello"...)} {
			c, err := net.DialTimeout("tcp", f.gw, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(15 * time.Second))
			c.Write(junk)
			c.(*net.TCPConn).CloseWrite()
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("junk %x: the gateway did not close the connection: %v", junk, err)
			}
			c.Close()
		}
		if code := curl("--proxy", proxy, "--proxy-cacert", cert, "--proxy-user", "demo:demo", origin); code != "200" {
			t.Fatalf("after the junk: status %s", code)
		}
		if states, err := f.states(); err != nil || states["x1"] != "healthy" {
			t.Fatalf("after the junk: exits %v (%v), want x1 healthy", states, err)
		}
	})
	t.Run("python requests", func(t *testing.T) {
		if _, err := exec.LookPath("python3"); err != nil {
			t.Skip("python3 not installed")
		}
		script := `import sys, requests
p = {"http": sys.argv[1], "https": sys.argv[1]}
r = requests.get(sys.argv[2], proxies=p, verify=sys.argv[3], timeout=15)
print(r.status_code)`
		proxyURL := "https://demo:demo@127.0.0.1:" + portOf(f.gw)
		cmd := exec.Command("python3", "-W", "ignore", "-c", script, proxyURL, origin, cert)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			if strings.Contains(stderr.String(), "No module named 'requests'") && os.Getenv("CI") == "" {
				t.Skip("python requests not installed")
			}
			t.Fatalf("python requests: %v\n%s%s", err, out, stderr.String())
		}
		if strings.TrimSpace(string(out)) != "200" {
			t.Fatalf("python requests: %s", out)
		}
	})
	t.Run("a new certificate on SIGHUP", func(t *testing.T) {
		if got := servedSerialOn(t, f.gw); got.Cmp(first) != 0 {
			t.Fatalf("serves serial %v, want %v", got, first)
		}
		second := selfSigned(t, cert, key)
		f.gwProc.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for servedSerialOn(t, f.gw).Cmp(second) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("still the old certificate 10 s after SIGHUP; log:\n%s", f.gwProc.output())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code := curl("--proxy", proxy, "--proxy-cacert", cert, "--proxy-user", "demo:demo", origin); code != "200" {
			t.Fatalf("after the reload: status %s", code)
		}
	})
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
