package farmtls

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
)

// Role is what a node does in the farm; its certificate names it.
type Role string

// The roles a node certificate may name.
const (
	RoleExit    Role = "exit"
	RoleGateway Role = "gateway"
)

// ParseRole returns the Role named s, or an error listing the valid ones.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleExit, RoleGateway:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want %s or %s", s, RoleExit, RoleGateway)
}

// URIScheme is the scheme of the SAN that names a node.
const URIScheme = "farmgate"

// NodeURI is the URI SAN of a node: farmgate://ROLE/ID, the id in the path
// and escaped as a URL path is (farmgate://exit/eu-1,
// farmgate://exit/de%20frankfurt%231). A path takes any id; a DNS name
// would not take a space, an underscore in some checkers, a slash or a
// non-ASCII letter, all of which farmgate accepts in an id.
func NodeURI(role Role, id string) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: string(role), Path: "/" + id}
}

// errNoIdentity means a certificate names no farmgate node.
var errNoIdentity = errors.New("no farmgate node URI SAN")

// Identity returns the role and id a node certificate names in its
// farmgate URI SAN. A certificate with none, or with more than one, names
// no node.
func Identity(cert *x509.Certificate) (Role, string, error) {
	var found *url.URL
	for _, u := range cert.URIs {
		if u.Scheme != URIScheme {
			continue
		}
		if found != nil {
			return "", "", fmt.Errorf("identity of %q: several farmgate URI SANs", cert.Subject.CommonName)
		}
		found = u
	}
	if found == nil {
		return "", "", fmt.Errorf("identity of %q: %w", cert.Subject.CommonName, errNoIdentity)
	}
	return parseNodeURI(found)
}

// parseNodeURI is NodeURI's inverse.
func parseNodeURI(u *url.URL) (Role, string, error) {
	role, err := ParseRole(u.Host)
	if err != nil {
		return "", "", fmt.Errorf("node URI %s: %w", u, err)
	}
	if len(u.Path) < 2 || u.Path[0] != '/' || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" {
		return "", "", fmt.Errorf("node URI %s: want %s://ROLE/ID", u, URIScheme)
	}
	return role, u.Path[1:], nil
}

// checkIdentity reports an error unless cert names role and, when id is
// not empty, id.
func checkIdentity(cert *x509.Certificate, role Role, id string) error {
	gotRole, gotID, err := Identity(cert)
	if err != nil {
		return err
	}
	if gotRole != role || id != "" && gotID != id {
		if id == "" {
			return fmt.Errorf("certificate names %s %q, want a %s", gotRole, gotID, role)
		}
		return fmt.Errorf("certificate names %s %q, want %s %q", gotRole, gotID, role, id)
	}
	return nil
}
