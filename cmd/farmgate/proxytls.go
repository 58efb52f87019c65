package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// proxyTLSFlags declares the flags of the customer port's certificate (an
// HTTPS proxy); the returned func reads them after parsing.
func proxyTLSFlags(fs *flag.FlagSet) func() (cert, key string, err error) {
	cert := fs.String("proxy-tls-cert", "", "PEM certificate (with its chain) for customers who connect with TLS (an https:// proxy URL) on --listen; re-read on SIGHUP")
	key := fs.String("proxy-tls-key", "", "PEM private key of --proxy-tls-cert; re-read with it")
	return func() (string, string, error) {
		switch {
		case *cert == "" && *key == "":
			return "", "", nil
		case *cert == "":
			return "", "", usageError{errors.New("--proxy-tls-cert: required with --proxy-tls-key")}
		case *key == "":
			return "", "", usageError{errors.New("--proxy-tls-key: required with --proxy-tls-cert")}
		}
		return *cert, *key, nil
	}
}

// proxyCert is the customer port's certificate, swapped by a reload while
// handshakes read it.
type proxyCert struct {
	cur atomic.Pointer[tls.Certificate]
}

// loadProxyCert reads the certificate and key; a file that does not load
// is a usage error naming its flag.
func loadProxyCert(certFile, keyFile string) (*proxyCert, error) {
	p := &proxyCert{}
	if err := p.reload(certFile, keyFile); err != nil {
		return nil, usageError{err}
	}
	return p, nil
}

func (p *proxyCert) reload(certFile, keyFile string) error {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("--proxy-tls-cert %s, --proxy-tls-key %s: %w", certFile, keyFile, err)
	}
	p.cur.Store(&c)
	return nil
}

// config serves the current certificate to each handshake.
func (p *proxyCert) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return p.cur.Load(), nil
		},
	}
}

// reloadProxyCert re-reads the files of settings s on a reload; a failure
// keeps the certificate in use.
func reloadProxyCert(p *proxyCert, s gatewaySettings, logger *slog.Logger) {
	if p == nil || s.proxyCert == "" {
		return
	}
	if err := p.reload(s.proxyCert, s.proxyKey); err != nil {
		logger.Error("reload of the customer port's certificate failed, keeping the old one", "err", err)
		return
	}
	logger.Info("customer port's certificate reloaded", "cert", s.proxyCert)
}
