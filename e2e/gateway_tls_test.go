package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// exitIDs returns the ids of the exits a gateway's admin API lists.
func exitIDs(t *testing.T, admin string) []string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/api/exits")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range list {
		ids = append(ids, e.ID)
	}
	slices.Sort(ids)
	return ids
}

// waitLog waits until p's output holds every one of want.
func waitLog(t *testing.T, p *process, what string, want ...string) {
	t.Helper()
	waitFor(t, 20*time.Second, what, func() error {
		out := p.output()
		for _, w := range want {
			if !strings.Contains(out, w) {
				return fmt.Errorf("no %q in the log:\n%s", w, out)
			}
		}
		return nil
	})
}

// A gateway accepts only the exit it meant to reach: an exit whose
// certificate names another id (an exit's address given under another
// name, as a stolen address would be) and an exit of another CA are
// refused, and never carry a customer. An exit refuses a gateway whose
// certificate is of another CA.
func TestGatewayRefusesAnExitThatIsNotTheOneNamed(t *testing.T) {
	t.Parallel()
	needCurl(t)
	links, other := newPKI(t), newPKI(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("id-token\n"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)
	origin := startDemoOrigin(t)

	real, impostor := freeAddr(t), freeAddr(t)
	x1 := start(t, links.tls("exit", "--listen", real, "--id", "x1", "--pool", "resi", "--country", "de", "--egress", "127.0.35.1",
		"--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	// An exit of another farm, with a certificate that names the id the
	// gateway expects there.
	start(t, other.tls("exit", "--listen", impostor, "--id", "x3", "--pool", "resi", "--country", "us", "--egress", "127.0.35.3",
		"--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	waitListening(t, real)
	waitListening(t, impostor)

	gw, admin := freeAddr(t), freeAddr(t)
	g := start(t, links.tls("gateway", "--listen", gw, "--admin", admin, "--customers", customers, "--token-file", token,
		"--exit", "x1="+real, "--exit", "x2="+real, "--exit", "x3="+impostor)...)
	waitListening(t, gw)
	waitLog(t, g, "the gateway's verdicts on the three exits",
		`msg="exit added" exit=x1`, `names exit \"x1\", want exit \"x2\"`, "unknown authority")
	if ids := exitIDs(t, admin); !slices.Equal(ids, []string{"x1"}) {
		t.Errorf("the gateway's exits: %v, want only x1", ids)
	}
	url := "http://" + origin.HTTPAddr + "/ip"
	if r := curl(t, "http://demo-country-de:demo@"+gw, url); r.status != 200 || !strings.Contains(r.body, "127.0.35.1") {
		t.Errorf("through x1: %d %q, want 200 from 127.0.35.1\n%s", r.status, r.body, g.output())
	}
	if r := curl(t, "http://demo-country-us:demo@"+gw, url); r.status != 503 {
		t.Errorf("through the impostor's country: %d %q, want 503 (no exit)", r.status, r.body)
	}

	// A gateway whose certificate is of another CA, though it trusts the
	// farm's exits too: the exit refuses it.
	flags := other.gateway()
	bundle := filepath.Join(dir, "both-cas.pem")
	os.WriteFile(bundle, append(other.ca.CertPEM(), links.ca.CertPEM()...), 0o644)
	flags[len(flags)-1] = bundle
	gw2 := freeAddr(t)
	g2 := start(t, append([]string{"gateway", "--listen", gw2, "--admin", "", "--customers", customers, "--token-file", token,
		"--exit", "x1=" + real}, flags...)...)
	waitListening(t, gw2)
	waitLog(t, g2, "the exit's refusal, as the gateway sees it", `msg="exit not reachable yet" exit=x1`, "unknown certificate authority")
	waitLog(t, x1, "the exit's refusal", "tls handshake refused", "unknown authority")
	if r := curl(t, "http://demo-country-de:demo@"+gw2, url); r.status == 200 {
		t.Errorf("through a gateway of another CA: %d %q, want a refusal", r.status, r.body)
	}
}

// A gateway's certificate re-issued on disk is used for its next link,
// without a restart, and without cutting the tunnels up: here the farm
// moves to a new CA. The gateway trusts both CAs; exit "old" both, and exit
// "new" only the new one, so it refuses the gateway until the gateway's
// pair is re-issued by the new CA.
func TestGatewayCertificateRotatesWithoutRestart(t *testing.T) {
	t.Parallel()
	needCurl(t)
	oldCA, newCA := newPKI(t), newPKI(t)
	dir := t.TempDir()
	bundle := filepath.Join(dir, "both-cas.pem")
	os.WriteFile(bundle, append(oldCA.ca.CertPEM(), newCA.ca.CertPEM()...), 0o644)
	withCA := func(flags []string, ca string) []string {
		flags[len(flags)-1] = ca
		return flags
	}
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("rotate-token\n"), 0o600)
	customers := filepath.Join(dir, "customers.yaml")
	os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)
	origin := startDemoOrigin(t)
	echo := echoServer(t)

	oldAddr, newAddr := freeAddr(t), freeAddr(t)
	start(t, append([]string{"exit", "--listen", oldAddr, "--id", "old", "--pool", "resi", "--country", "de", "--egress", "127.0.36.1",
		"--token-file", token, "--allow-dest", "127.0.0.0/8"}, withCA(oldCA.exit("old"), bundle)...)...)
	newExit := start(t, newCA.tls("exit", "--listen", newAddr, "--id", "new", "--pool", "resi", "--country", "us", "--egress", "127.0.36.2",
		"--token-file", token, "--allow-dest", "127.0.0.0/8")...)
	waitListening(t, oldAddr)
	waitListening(t, newAddr)

	// The gateway's pair lives at one path; it is re-issued in place.
	gwCert, gwKey := filepath.Join(dir, "gw.pem"), filepath.Join(dir, "gw-key.pem")
	writePair := func(k *pki) {
		cert, key, err := k.ca.Issue(farmtls.RoleGateway, "gw", time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The key first, then the certificate, each through a rename:
		// the gateway may look in between, and keeps the old pair then.
		for _, f := range []struct {
			path string
			data []byte
		}{{gwKey, key}, {gwCert, cert}} {
			os.WriteFile(f.path+".tmp", f.data, 0o600)
			if err := os.Rename(f.path+".tmp", f.path); err != nil {
				t.Fatal(err)
			}
		}
	}
	writePair(oldCA)
	gw, admin := freeAddr(t), freeAddr(t)
	g := start(t, "gateway", "--listen", gw, "--admin", admin, "--customers", customers, "--token-file", token,
		"--exit", "old="+oldAddr, "--exit", "new="+newAddr, "--tls-cert", gwCert, "--tls-key", gwKey, "--tls-ca", bundle)
	waitListening(t, gw)
	waitLog(t, g, "exit old added and exit new refusing the old CA's gateway",
		`msg="exit added" exit=old`, `msg="exit not reachable yet" exit=new`)
	url := "http://" + origin.HTTPAddr + "/ip"
	if r := curl(t, "http://demo-country-us:demo@"+gw, url); r.status == 200 {
		t.Fatalf("through exit new before the rotation: %d %q, want a refusal", r.status, r.body)
	}

	// A tunnel through exit old that stays up across the rotation.
	c, err := net.Dial("tcp", gw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\nProxy-Authorization: Basic ZGVtby1jb3VudHJ5LWRlOmRlbW8=\r\n\r\n", echo) // demo-country-de:demo
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT through exit old: %v %v", resp, err)
	}
	echoLine := func(what string) {
		t.Helper()
		fmt.Fprintf(c, "%s\n", what)
		if line, err := br.ReadString('\n'); err != nil || line != what+"\n" {
			t.Fatalf("tunnel up since before the rotation, %s: %q, %v", what, line, err)
		}
	}
	echoLine("before")

	writePair(newCA)
	rotated := time.Now()
	waitLog(t, g, "the gateway to load the new pair and learn exit new", "tls certificate reloaded", `msg="exit added" exit=new`)
	t.Logf("the gateway used the re-issued certificate %.1fs after it was written (it looks every 5s)", time.Since(rotated).Seconds())
	if r := curl(t, "http://demo-country-us:demo@"+gw, url); r.status != 200 || !strings.Contains(r.body, "127.0.36.2") {
		t.Errorf("through exit new after the rotation: %d %q, want 200 from 127.0.36.2\n%s\n%s", r.status, r.body, g.output(), newExit.output())
	}
	if r := curl(t, "http://demo-country-de:demo@"+gw, url); r.status != 200 || !strings.Contains(r.body, "127.0.36.1") {
		t.Errorf("through exit old after the rotation: %d %q, want 200 from 127.0.36.1", r.status, r.body)
	}
	echoLine("after")
	if strings.Contains(g.output(), "level=ERROR") {
		t.Errorf("errors in the gateway's log:\n%s", g.output())
	}

	// SIGHUP re-reads the files at once: a broken certificate is refused,
	// the log names it, and the links go on with the pair in use.
	os.WriteFile(gwCert, []byte("not a certificate\n"), 0o644)
	g.cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, g, "the refused reload", "reload tls files failed", gwCert)
	if r := curl(t, "http://demo-country-us:demo@"+gw, url); r.status != 200 {
		t.Errorf("through exit new after a broken certificate: %d %q, want 200", r.status, r.body)
	}
	echoLine("after a broken certificate")
}

// recorder is a TCP relay between a gateway and an exit that keeps every
// byte it passes, both ways: what someone on the path sees.
type recorder struct {
	addr string
	mu   sync.Mutex // guards seen
	seen bytes.Buffer
}

func startRecorder(t *testing.T, target string) *recorder {
	t.Helper()
	r := &recorder{}
	r.addr = serveTCP(t, func(c net.Conn) {
		defer c.Close()
		up, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{}, 2)
		pass := func(dst, src net.Conn) {
			io.Copy(io.MultiWriter(dst, r), src)
			dst.(*net.TCPConn).CloseWrite()
			done <- struct{}{}
		}
		go pass(up, c)
		go pass(c, up)
		<-done
		<-done
	})
	return r
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen.Write(p)
}

func (r *recorder) captured() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.seen.Bytes())
}

// What crosses the network between a gateway and an exit holds neither the
// exit token nor a customer's request: not the request line of an http://
// request, not the CONNECT of a tunnel nor its bytes. The same farm with
// --insecure-links shows all of them to the recorder, which is how the
// test knows the recorder sees the traffic.
func TestLinkTrafficCarriesNoSecrets(t *testing.T) {
	t.Parallel()
	needCurl(t)
	origin := startDemoOrigin(t)
	echo := echoServer(t)
	for _, tc := range []struct {
		name    string
		tls     bool
		visible bool // the secrets are in the capture
	}{
		{"mutual TLS links", true, false},
		{"plaintext links", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			links := newPKI(t)
			dir := t.TempDir()
			const secretToken = "token-7f3a9c-never-on-the-wire"
			token := filepath.Join(dir, "token")
			os.WriteFile(token, []byte(secretToken+"\n"), 0o600)
			customers := filepath.Join(dir, "customers.yaml")
			os.WriteFile(customers, []byte(demo.DemoCustomers), 0o600)
			node := func(args ...string) []string {
				if tc.tls {
					return links.tls(args...)
				}
				return append(args, "--insecure-links")
			}
			exitAddr := freeAddr(t)
			start(t, node("exit", "--listen", exitAddr, "--id", "cap-1", "--pool", "resi", "--egress", "127.0.37.1",
				"--token-file", token, "--allow-dest", "127.0.0.0/8")...)
			waitListening(t, exitAddr)
			rec := startRecorder(t, exitAddr)
			gw, admin := freeAddr(t), freeAddr(t)
			g := start(t, node("gateway", "--listen", gw, "--admin", admin, "--customers", customers, "--token-file", token,
				"--exit", "cap-1="+rec.addr)...)
			waitListening(t, gw)
			waitLog(t, g, "the exit learnt through the recorder", `msg="exit added" exit=cap-1`)

			const canary = "canary-request-4b1d"
			r := curl(t, "http://demo:demo@"+gw, "http://"+origin.HTTPAddr+"/ip?"+canary)
			if r.status != 200 {
				t.Fatalf("http:// request: %d %q\n%s", r.status, r.body, g.output())
			}
			c, err := net.Dial("tcp", gw)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\nProxy-Authorization: Basic ZGVtbzpkZW1v\r\n\r\n", echo) // demo:demo
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			const tunnelCanary = "tunnel-bytes-9e2c"
			fmt.Fprintf(c, "%s\n", tunnelCanary)
			if line, err := br.ReadString('\n'); err != nil || line != tunnelCanary+"\n" {
				t.Fatalf("echo through the tunnel: %q, %v", line, err)
			}

			capture := rec.captured()
			if len(capture) == 0 {
				t.Fatal("the recorder saw nothing")
			}
			for _, secret := range []string{secretToken, canary, "CONNECT " + echo, tunnelCanary} {
				if got := bytes.Contains(capture, []byte(secret)); got != tc.visible {
					t.Errorf("%q in the %d bytes between gateway and exit: %v, want %v", secret, len(capture), got, tc.visible)
				}
			}
		})
	}
}
