package farmtls

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Config says where a node's TLS material is and what it must be.
type Config struct {
	// CertFile is the PEM file of this node's certificate (what `farmgate
	// certs issue` writes as ID.pem). Required.
	CertFile string
	// KeyFile is the PEM file of the certificate's private key (ID-key.pem).
	// Required.
	KeyFile string
	// CAFile is the PEM file of the farm CA certificate (ca.pem) that peers'
	// certificates must chain to. During a CA rotation it holds both CAs.
	// Required.
	CAFile string
	// Role is the role this node's certificate must name. Required.
	Role Role
	// ID is the id this node's certificate must name, so an exit never
	// serves another exit's certificate. Default "": any id.
	ID string
	// PollInterval is how often Watch reads the files to see whether they
	// changed (±10% jitter). Default 5s.
	PollInterval time.Duration
	// Now is the clock against which certificates are checked. Default
	// time.Now.
	Now func() time.Time
	// Logger logs reloads and files that failed to load. Default: discard.
	Logger *slog.Logger
}

// DefaultPollInterval is Config.PollInterval's default.
const DefaultPollInterval = 5 * time.Second

// sessionCacheSize is how many exits' TLS sessions a gateway remembers for
// resumption: more than a farm has exits.
const sessionCacheSize = 4096

// Validate reports the first invalid field, named.
func (c Config) Validate() error {
	switch {
	case c.CertFile == "":
		return errors.New("tls config: cert file: required")
	case c.KeyFile == "":
		return errors.New("tls config: key file: required")
	case c.CAFile == "":
		return errors.New("tls config: CA file: required")
	case c.PollInterval < 0:
		return fmt.Errorf("tls config: poll interval: %s is negative", c.PollInterval)
	}
	if _, err := ParseRole(string(c.Role)); err != nil {
		return fmt.Errorf("tls config: %w", err)
	}
	return nil
}

// Holder keeps a node's certificate, key and CA loaded from their files and
// hands them to each TLS handshake. Reload and Watch replace them
// atomically once the new files load and check out; a bad file keeps the
// old material. Connections already up are never touched by a reload.
type Holder struct {
	cfg Config
	log *slog.Logger

	cur atomic.Pointer[material] // never nil after New

	// mu serialises loads and guards failed and logged: the failure
	// (digest and error) of Watch's last check, and the one it last logged.
	mu             sync.Mutex
	failed, logged string

	server   *tls.Config            // exits: the listener's config, see ServerConfig
	sessions tls.ClientSessionCache // gateways: shared by every ClientConfig
}

// material is one load of the files, with what handshakes need of it.
type material struct {
	digest [sha256.Size]byte // of the three files' contents
	cert   *tls.Certificate  // Leaf set
	roots  *x509.CertPool
	server *tls.Config // what an exit's handshake uses
}

// New loads the files cfg names and returns a Holder, or an error naming
// the file at fault.
func New(cfg Config) (*Holder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Holder{
		cfg:      cfg,
		log:      log.With("component", "farmtls"),
		sessions: tls.NewLRUClientSessionCache(sessionCacheSize),
	}
	h.server = h.newServerConfig()
	files, digest, err := h.read()
	if err != nil {
		return nil, err
	}
	m, err := h.load(files, digest)
	if err != nil {
		return nil, err
	}
	h.cur.Store(m)
	h.log.Info("tls certificate loaded", loaded(m)...)
	return h, nil
}

// Leaf is the node certificate in use.
func (h *Holder) Leaf() *x509.Certificate { return h.cur.Load().cert.Leaf }

// Reload reads the files again (on SIGHUP) and, if they changed and load,
// uses them from the next handshake on. On error the old material stays
// and the error names the file at fault.
func (h *Holder) Reload() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.reloadLocked()
	return err
}

// reloadLocked loads the files if their digest changed; digest is what
// was read (zero on a read error).
func (h *Holder) reloadLocked() (digest [sha256.Size]byte, err error) {
	files, digest, err := h.read()
	if err != nil {
		return digest, err
	}
	if digest == h.cur.Load().digest {
		return digest, nil
	}
	m, err := h.load(files, digest)
	if err != nil {
		return digest, err
	}
	h.cur.Store(m)
	h.log.Info("tls certificate reloaded", loaded(m)...)
	return digest, nil
}

// Watch reloads the files whenever they change, checking every
// PollInterval, until ctx ends. The caller runs it in a goroutine it owns
// and waits for it to return. Files that fail to load are logged once
// they stayed the same for two checks (a rotation writes the certificate
// and the key one after the other); the old material stays meanwhile.
func (h *Holder) Watch(ctx context.Context) {
	every := h.cfg.PollInterval
	t := time.NewTimer(jitter(every))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.check()
		t.Reset(jitter(every))
	}
}

// check is one round of Watch.
func (h *Holder) check() {
	defer func() {
		if r := recover(); r != nil {
			h.log.Error("tls watch panicked", "panic", fmt.Sprint(r))
		}
	}()
	h.mu.Lock()
	defer h.mu.Unlock()
	digest, err := h.reloadLocked()
	if err == nil {
		h.failed, h.logged = "", ""
		return
	}
	// The same files failing the same way: one failure, logged once.
	failure := string(digest[:]) + err.Error()
	switch failure {
	case h.logged:
	case h.failed:
		h.log.Error("tls files changed but do not load, keeping the old certificate", "err", err)
		h.logged = failure
	default:
		h.failed = failure // maybe half-way through a rotation: look again
	}
}

// jitter is d ±10%.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + rand.N(d/5+1)
}

// files are the three files' contents.
type files struct{ cert, key, ca []byte }

// read reads the three files and digests their contents.
func (h *Holder) read() (files, [sha256.Size]byte, error) {
	var f files
	var err error
	if f.cert, err = os.ReadFile(h.cfg.CertFile); err != nil {
		return f, [sha256.Size]byte{}, &FileError{CertFile, h.cfg.CertFile, err}
	}
	if f.key, err = os.ReadFile(h.cfg.KeyFile); err != nil {
		return f, [sha256.Size]byte{}, &FileError{KeyFile, h.cfg.KeyFile, err}
	}
	if f.ca, err = os.ReadFile(h.cfg.CAFile); err != nil {
		return f, [sha256.Size]byte{}, &FileError{CAFile, h.cfg.CAFile, err}
	}
	d := sha256.New()
	for _, b := range [][]byte{f.cert, f.key, f.ca} {
		d.Write(fmt.Appendf(nil, "%d:", len(b)))
		d.Write(b)
	}
	var digest [sha256.Size]byte
	d.Sum(digest[:0])
	return f, digest, nil
}

// load parses and checks files: the key matches the certificate, the
// certificate chains to the CA now, with the EKU of its role, and names
// the configured role and id.
func (h *Holder) load(f files, digest [sha256.Size]byte) (*material, error) {
	c := h.cfg
	chain, err := parseCerts(f.cert)
	if err != nil {
		return nil, &FileError{CertFile, c.CertFile, err}
	}
	key, err := parseKey(f.key)
	if err != nil {
		return nil, &FileError{KeyFile, c.KeyFile, err}
	}
	if !publicKeysEqual(chain[0].PublicKey, key.Public()) {
		return nil, &FileError{KeyFile, c.KeyFile, fmt.Errorf("does not match certificate %s", c.CertFile)}
	}
	cas, err := parseCerts(f.ca)
	if err != nil {
		return nil, &FileError{CAFile, c.CAFile, err}
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		if !ca.IsCA {
			return nil, &FileError{CAFile, c.CAFile, fmt.Errorf("%q is not a CA certificate", ca.Subject.CommonName)}
		}
		roots.AddCert(ca)
	}
	if err := verify(chain, roots, c.Role, c.Now()); err != nil {
		return nil, &FileError{CertFile, c.CertFile, fmt.Errorf("with CA %s: %w", c.CAFile, err)}
	}
	if err := checkIdentity(chain[0], c.Role, c.ID); err != nil {
		return nil, &FileError{CertFile, c.CertFile, err}
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		cert.Certificate = append(cert.Certificate, x.Raw)
	}
	m := &material{digest: digest, cert: cert, roots: roots}
	m.server = h.handshakeServerConfig(m)
	return m, nil
}

// File names one of the three files of a Config.
type File string

// The files of a Config, as a FileError names them.
const (
	CertFile File = "certificate"
	KeyFile  File = "key"
	CAFile   File = "CA"
)

// FileError is a file that did not load, or did not make good material
// with the others: Which says which, so a caller can name its own flag.
type FileError struct {
	Which File
	Path  string
	Err   error
}

func (e *FileError) Error() string { return fmt.Sprintf("%s %s: %v", e.Which, e.Path, e.Err) }
func (e *FileError) Unwrap() error { return e.Err }

// verify checks that chain (leaf first) chains to roots at now, with the
// EKU a node of role needs.
func verify(chain []*x509.Certificate, roots *x509.CertPool, role Role, now time.Time) error {
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{eku(role)}}
	if len(chain) > 1 {
		opts.Intermediates = x509.NewCertPool()
		for _, x := range chain[1:] {
			opts.Intermediates.AddCert(x)
		}
	}
	_, err := chain[0].Verify(opts)
	return err
}

func eku(role Role) x509.ExtKeyUsage {
	if role == RoleGateway {
		return x509.ExtKeyUsageClientAuth
	}
	return x509.ExtKeyUsageServerAuth
}

// loaded is what the log says of a load: never the key.
func loaded(m *material) []any {
	leaf := m.cert.Leaf
	role, id, _ := Identity(leaf)
	return []any{"role", string(role), "id", id, "serial", fmt.Sprintf("%x", leaf.SerialNumber),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
}
