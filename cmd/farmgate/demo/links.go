package demo

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// links holds a demo farm's TLS material for its gateway↔exit links: a
// farm CA minted for the farm, and each node's certificate, in files of a
// temporary directory (as `farmgate certs init` and `certs issue` write
// them), loaded into farmtls holders. It is nil when the links are
// plaintext (Config.InsecureLinks).
type links struct {
	dir     string
	ca      *farmtls.CA
	gateway *farmtls.Holder
	exits   map[string]*farmtls.Holder // by exit id; an exit restarted keeps its own
}

// newLinks mints a CA and the gateway's certificate in a new temporary
// directory.
func newLinks() (*links, error) {
	dir, err := os.MkdirTemp("", "farmgate-demo-pki-")
	if err != nil {
		return nil, fmt.Errorf("demo certificates: %w", err)
	}
	ca, err := farmtls.NewCA("farmgate demo CA", time.Now(), 24*time.Hour)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("demo certificates: %w", err)
	}
	l := &links{dir: dir, ca: ca, exits: map[string]*farmtls.Holder{}}
	if err := os.WriteFile(l.caFile(), ca.CertPEM(), 0o644); err != nil {
		l.close()
		return nil, fmt.Errorf("demo certificates: %w", err)
	}
	if l.gateway, err = l.issue(farmtls.RoleGateway, "demo-gateway"); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *links) caFile() string { return filepath.Join(l.dir, "ca.pem") }

// issue writes a certificate for role and id and loads it.
func (l *links) issue(role farmtls.Role, id string) (*farmtls.Holder, error) {
	cert, key, err := l.ca.Issue(role, id, time.Now(), 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("demo certificates: %w", err)
	}
	name := string(role) + "-" + fmt.Sprintf("%x", id) // any id makes a file name
	certFile, keyFile := filepath.Join(l.dir, name+".pem"), filepath.Join(l.dir, name+"-key.pem")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return nil, fmt.Errorf("demo certificates: %w", err)
	}
	if err := os.WriteFile(certFile, cert, 0o644); err != nil {
		return nil, fmt.Errorf("demo certificates: %w", err)
	}
	return farmtls.New(farmtls.Config{CertFile: certFile, KeyFile: keyFile, CAFile: l.caFile(), Role: role, ID: id})
}

// exitServer is the listener configuration of exit id, its certificate
// issued on first use.
func (l *links) exitServer(id string) (*tls.Config, error) {
	h, ok := l.exits[id]
	if !ok {
		var err error
		if h, err = l.issue(farmtls.RoleExit, id); err != nil {
			return nil, err
		}
		l.exits[id] = h
	}
	return h.ServerConfig(), nil
}

// close removes the files.
func (l *links) close() { os.RemoveAll(l.dir) }
