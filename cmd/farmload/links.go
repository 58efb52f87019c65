//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
)

// mintLinks makes a farm CA and the certificates of exits t1..tN and of a
// gateway in dir, as `farmgate certs init` and `certs issue` would, and
// returns each node's --tls-* flags by id ("gateway" for the gateway).
func mintLinks(dir string, exits int) (map[string][]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls links: %w", err)
	}
	ca, err := farmtls.NewCA("farmload CA", time.Now(), 24*time.Hour)
	if err != nil {
		return nil, fmt.Errorf("tls links: %w", err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("tls links: %w", err)
	}
	nodes := map[string]farmtls.Role{"gateway": farmtls.RoleGateway}
	for i := range exits {
		nodes[fmt.Sprintf("t%d", i+1)] = farmtls.RoleExit
	}
	out := map[string][]string{}
	for id, role := range nodes {
		cert, key, err := ca.Issue(role, id, time.Now(), 24*time.Hour)
		if err != nil {
			return nil, fmt.Errorf("tls links: %w", err)
		}
		certFile, keyFile := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
		if err := os.WriteFile(keyFile, key, 0o600); err != nil {
			return nil, fmt.Errorf("tls links: %w", err)
		}
		if err := os.WriteFile(certFile, cert, 0o644); err != nil {
			return nil, fmt.Errorf("tls links: %w", err)
		}
		out[id] = []string{"--tls-cert", certFile, "--tls-key", keyFile, "--tls-ca", caFile}
	}
	return out, nil
}

// linkFlags are node id's --tls-* flags in links, or --insecure-links
// when links has none (the plaintext farm).
func linkFlags(links map[string][]string, id string) []string {
	if f, ok := links[id]; ok {
		return f
	}
	return []string{"--insecure-links"}
}
