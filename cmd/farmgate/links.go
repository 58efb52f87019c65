package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// linkSettings is how a node's gateway↔exit links are secured: mutual TLS
// with the farm's certificates, or plaintext when the operator said so.
type linkSettings struct {
	tls      farmtls.Config // CertFile, KeyFile, CAFile empty when insecure
	insecure bool
}

// linkFlags declares the links' flags on fs (exits and gateways);
// the returned func reads them after parsing, for a node of role and id.
func linkFlags(fs *flag.FlagSet) func(role farmtls.Role, id string) (linkSettings, error) {
	cert := fs.String("tls-cert", "", "PEM certificate of this node for the gateway↔exit links (farmgate certs issue); re-read on SIGHUP and when it changes")
	key := fs.String("tls-key", "", "PEM private key of --tls-cert; re-read with it")
	ca := fs.String("tls-ca", "", "PEM farm CA that the other end's certificate must chain to (farmgate certs init); re-read with it")
	insecure := fs.Bool("insecure-links", false, "plaintext gateway↔exit links instead of --tls-*: the token and the customers' traffic cross the network in clear, so only on one trusted network")
	return func(role farmtls.Role, id string) (linkSettings, error) {
		s := linkSettings{insecure: *insecure}
		given := *cert != "" || *key != "" || *ca != ""
		switch {
		case *insecure && given:
			return s, usageError{errors.New("--insecure-links: contradicts --tls-cert, --tls-key and --tls-ca; give one or the other")}
		case *insecure:
			return s, nil
		case !given:
			return s, usageError{errors.New("--tls-cert, --tls-key, --tls-ca: required for encrypted gateway↔exit links " +
				"(make them with 'farmgate certs init --dir D' and 'farmgate certs issue --dir D --role " + string(role) + " --id ID'), " +
				"or --insecure-links for plaintext links on one trusted network")}
		}
		for _, f := range []struct{ name, v string }{{"tls-cert", *cert}, {"tls-key", *key}, {"tls-ca", *ca}} {
			if f.v == "" {
				return s, usageError{fmt.Errorf("--%s: required with the other --tls-* flags", f.name)}
			}
		}
		s.tls = farmtls.Config{CertFile: *cert, KeyFile: *key, CAFile: *ca, Role: role, ID: id}
		return s, nil
	}
}

// linkFlagOf names the flag of a file of the links' TLS material.
var linkFlagOf = map[farmtls.File]string{
	farmtls.CertFile: "--tls-cert",
	farmtls.KeyFile:  "--tls-key",
	farmtls.CAFile:   "--tls-ca",
}

// loadLinkTLS loads the links' TLS material, or returns nil for plaintext
// links after the warning they deserve. A file that does not load is a
// usage error naming its flag.
func loadLinkTLS(s linkSettings, logger *slog.Logger) (*farmtls.Holder, error) {
	if s.insecure {
		logger.Warn("INSECURE LINKS: gateway↔exit links are plaintext (--insecure-links); the gateway token and the customers' traffic cross the network in clear. Use --tls-cert, --tls-key and --tls-ca unless this is one trusted network")
		return nil, nil
	}
	cfg := s.tls
	cfg.Logger = logger
	h, err := farmtls.New(cfg)
	if err != nil {
		var fe *farmtls.FileError
		if errors.As(err, &fe) {
			return nil, usageError{fmt.Errorf("%s: %w", linkFlagOf[fe.Which], err)}
		}
		return nil, usageError{err}
	}
	return h, nil
}
