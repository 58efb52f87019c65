package farmtls_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// farm is a CA with its files in a test's temporary directory.
type farm struct {
	t   testing.TB
	dir string
	ca  *farmtls.CA
}

func newFarm(t testing.TB) *farm {
	t.Helper()
	ca, err := farmtls.NewCA("test farm CA", time.Now(), time.Hour*24)
	if err != nil {
		t.Fatal(err)
	}
	f := &farm{t: t, dir: t.TempDir(), ca: ca}
	f.write("ca.pem", ca.CertPEM())
	return f
}

func (f *farm) caFile() string { return filepath.Join(f.dir, "ca.pem") }

func (f *farm) write(name string, data []byte) string {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	// Through a rename, as an operator's tool replaces a file: a reader
	// sees the old file or the new one.
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// issue writes a certificate and key for role and id as NAME.pem and
// NAME-key.pem, and returns their paths.
func (f *farm) issue(name string, role farmtls.Role, id string) (cert, key string) {
	f.t.Helper()
	c, k, err := f.ca.Issue(role, id, time.Now(), time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	key = f.write(name+"-key.pem", k)
	cert = f.write(name+".pem", c)
	return cert, key
}

// holder issues a certificate for role and id and loads it.
func (f *farm) holder(role farmtls.Role, id string) *farmtls.Holder {
	f.t.Helper()
	cert, key := f.issue(string(role)+"-"+id, role, id)
	h, err := farmtls.New(farmtls.Config{CertFile: cert, KeyFile: key, CAFile: f.caFile(), Role: role, ID: id, Logger: testLogger(f.t)})
	if err != nil {
		f.t.Fatal(err)
	}
	return h
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// exit is a TLS echo server on loopback with an exit's server config: each
// connection echoes lines; handshake errors are recorded.
type exit struct {
	addr string

	mu   sync.Mutex // guards errs
	errs []error
}

func startExit(t testing.TB, cfg *tls.Config) *exit {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &exit{addr: ln.Addr().String()}
	tln := tls.NewListener(ln, cfg)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					e.mu.Lock()
					e.errs = append(e.errs, err)
					e.mu.Unlock()
					return
				}
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return e
}

// handshakeErrors returns the server's handshake errors so far.
func (e *exit) handshakeErrors() []error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]error(nil), e.errs...)
}

// roundTrip dials addr with cfg, sends a line and reads it back (which also
// takes in the exit's session ticket), and returns the connection state.
func roundTrip(t testing.TB, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// tls.Client, as a gateway dials: tls.Dial would set ServerName to
	// the host, and exits on one host would share a session cache entry.
	c := tls.Client(raw, cfg)
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		return c.ConnectionState(), err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return c.ConnectionState(), err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return c.ConnectionState(), err
	}
	if line != "ping\n" {
		return c.ConnectionState(), errors.New("echo: " + line)
	}
	return c.ConnectionState(), nil
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
