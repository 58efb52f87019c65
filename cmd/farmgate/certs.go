package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

const certsUsage = `usage: farmgate certs COMMAND [flags]

commands:
  init  --dir D [--force] [--valid-for 87600h]
        mint the farm CA: D/ca.pem (every node's --tls-ca) and D/ca-key.pem
        (keep it off the nodes)
  issue --dir D --role exit|gateway --id ID [--out PREFIX] [--valid-for 8760h]
        sign a node certificate with the CA in D: PREFIX.pem (--tls-cert)
        and PREFIX-key.pem (--tls-key), PREFIX defaulting to D/ID; an
        existing pair is replaced, which is how a certificate is rotated
`

// runCerts implements `farmgate certs`: the farm CA and node certificates
// of the gateway↔exit links.
func runCerts(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprint(stdout, certsUsage)
		if len(args) == 0 {
			return usageError{errors.New("missing command (init or issue)")}
		}
		return nil
	}
	// Plain flags: no config file, no FARMGATE_* variables, so an exit's
	// environment (FARMGATE_ID) cannot slip into a certificate.
	fs := flag.NewFlagSet("certs "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	dir := fs.String("dir", "", "directory of the CA files (required)")
	switch args[0] {
	case "init":
		force := fs.Bool("force", false, "replace an existing CA (every certificate it signed stops being trusted)")
		validFor := fs.Duration("valid-for", farmtls.DefaultCAValidity, "how long the CA is valid")
		if err := parseCertsFlags(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return usageError{errors.New("--dir: required")}
		}
		if *validFor <= 0 {
			return usageError{fmt.Errorf("--valid-for: want > 0, got %s", *validFor)}
		}
		return certsInit(stdout, *dir, *force, *validFor)
	case "issue":
		roleFlag := fs.String("role", "", "exit or gateway (required)")
		id := fs.String("id", "", "the node's id, as its --id (required)")
		out := fs.String("out", "", "path prefix of the files written: PREFIX.pem and PREFIX-key.pem; default DIR/ID")
		validFor := fs.Duration("valid-for", farmtls.DefaultNodeValidity, "how long the certificate is valid (at most as long as the CA)")
		if err := parseCertsFlags(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" {
			return usageError{errors.New("--dir: required")}
		}
		role, err := farmtls.ParseRole(*roleFlag)
		if err != nil {
			return usageError{fmt.Errorf("--role: %w", err)}
		}
		if strings.TrimSpace(*id) == "" {
			return usageError{errors.New("--id: required")}
		}
		if *validFor <= 0 {
			return usageError{fmt.Errorf("--valid-for: want > 0, got %s", *validFor)}
		}
		prefix := *out
		if prefix == "" {
			if !fileSafe(*id) {
				return usageError{fmt.Errorf("--id %q cannot name a file: give --out", *id)}
			}
			prefix = filepath.Join(*dir, *id)
		}
		return certsIssue(stdout, *dir, role, *id, prefix, *validFor)
	}
	return usageError{fmt.Errorf("unknown command %q (want init or issue)", args[0])}
}

func parseCertsFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// The CA's files in --dir.
const (
	caCertName = "ca.pem"
	caKeyName  = "ca-key.pem"
)

func certsInit(stdout io.Writer, dir string, force bool, validFor time.Duration) error {
	certPath, keyPath := filepath.Join(dir, caCertName), filepath.Join(dir, caKeyName)
	if !force {
		for _, p := range []string{certPath, keyPath} {
			if _, err := os.Lstat(p); err == nil {
				return usageError{fmt.Errorf("--dir: %s exists; --force replaces the CA, and every certificate it signed stops being trusted", p)}
			}
		}
	}
	ca, err := farmtls.NewCA("farmgate farm CA", time.Now(), validFor)
	if err != nil {
		return err
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return usageError{fmt.Errorf("--dir: %w", err)}
	}
	// The key first: a CA certificate without its key would look usable.
	if err := writeAtomic(keyPath, key, 0o600); err != nil {
		return err
	}
	if err := writeAtomic(certPath, ca.CertPEM(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (every node's --tls-ca) and %s (keep it off the nodes), valid until %s\n",
		certPath, keyPath, ca.Cert.NotAfter.UTC().Format(time.DateOnly))
	return nil
}

func certsIssue(stdout io.Writer, dir string, role farmtls.Role, id, prefix string, validFor time.Duration) error {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertName))
	if err != nil {
		return usageError{fmt.Errorf("--dir: %w (run farmgate certs init --dir %s first)", err, dir)}
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyName))
	if err != nil {
		return usageError{fmt.Errorf("--dir: %w", err)}
	}
	ca, err := farmtls.ParseCA(certPEM, keyPEM)
	if err != nil {
		return usageError{fmt.Errorf("--dir %s: %w", dir, err)}
	}
	cert, key, err := ca.Issue(role, id, time.Now(), validFor)
	if err != nil {
		return usageError{fmt.Errorf("--id: %w", err)}
	}
	certPath, keyPath := prefix+".pem", prefix+"-key.pem"
	if d := filepath.Dir(prefix); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return usageError{fmt.Errorf("--out: %w", err)}
		}
	}
	// The key first, so a node watching the files sees the new key no
	// later than its certificate.
	if err := writeAtomic(keyPath, key, 0o600); err != nil {
		return usageError{fmt.Errorf("--out: %w", err)}
	}
	if err := writeAtomic(certPath, cert, 0o644); err != nil {
		return usageError{fmt.Errorf("--out: %w", err)}
	}
	until := "?"
	if b, _ := pem.Decode(cert); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			until = c.NotAfter.UTC().Format(time.DateOnly)
		}
	}
	fmt.Fprintf(stdout, "wrote %s (--tls-cert) and %s (--tls-key) for %s, valid until %s\n",
		certPath, keyPath, farmtls.NodeURI(role, id), until)
	return nil
}

// fileSafe reports whether id can be a file name as it is.
func fileSafe(id string) bool {
	return id != "." && id != ".." && !strings.HasPrefix(id, "-") && !strings.ContainsAny(id, "/\\\x00")
}

// writeAtomic replaces path with data through a rename, so a node that
// watches the file reads the old one or the new one, never half of one.
func writeAtomic(path string, data []byte, mode fs.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // after a successful rename there is nothing to remove
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
