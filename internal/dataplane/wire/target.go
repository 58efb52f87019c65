package wire

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// MaxHostLen is the longest host name a target may have: a DNS name's 253
// characters (254 with the root's trailing dot, RFC 1035 section 2.3.4).
const MaxHostLen = 253

// ParseTarget splits an authority-form target, "host:port", and checks it
// by the rules of the farm. Both sides apply them: the exit to what a
// gateway asks it to reach, the gateway to what a customer asks for (a
// CONNECT or SOCKS5 target, or the host of an absolute-form URL) before it
// reaches any exit, so that a target an exit would refuse as malformed is
// the customer's 400 and never counts against the exit.
//
// The port is 1 to 65535 in decimal digits only (no sign, no space). The
// host is an IP literal, an IPv6 one in brackets and without a zone (a zone
// names an interface of whichever machine dials), or a DNS name as a
// resolver takes it (net's rules): dot-separated labels of 1 to 63 letters,
// digits, '-' and '_', none starting or ending with '-', at most
// MaxHostLen characters (and an optional trailing dot), not all digits. A
// name in another script must come in its ASCII (punycode) form.
func ParseTarget(t string) (host string, port uint16, err error) {
	host, ps, err := net.SplitHostPort(t)
	if err != nil {
		return "", 0, fmt.Errorf("target %q: %w", t, ErrMalformed)
	}
	p, ok := parsePort(ps)
	if !ok {
		return "", 0, fmt.Errorf("target %q: bad port: %w", t, ErrMalformed)
	}
	bracketed := strings.HasPrefix(t, "[")
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" || bracketed != ip.Is6() {
			return "", 0, fmt.Errorf("target %q: bad IP literal: %w", t, ErrMalformed)
		}
		return host, p, nil
	}
	if bracketed || !isDomainName(host) {
		return "", 0, fmt.Errorf("target %q: bad host: %w", t, ErrMalformed)
	}
	return host, p, nil
}

// CheckTarget checks an authority-form target (host:port) by ParseTarget's
// rules.
func CheckTarget(t string) error {
	_, _, err := ParseTarget(t)
	return err
}

// URLTarget returns the authority-form target (host:port) that an
// absolute-form request's URL names: the scheme is http or https (an exit
// forwards nothing else), the port is the scheme's when the URL has none,
// and the result passes ParseTarget.
func URLTarget(u *url.URL) (string, error) {
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return "", fmt.Errorf("URL %s: scheme %q is not http or https: %w", u.Redacted(), u.Scheme, ErrMalformed)
	}
	if u.Opaque != "" || u.Host == "" {
		return "", fmt.Errorf("URL %s: no host: %w", u.Redacted(), ErrMalformed)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	t := net.JoinHostPort(u.Hostname(), port)
	if err := CheckTarget(t); err != nil {
		return "", fmt.Errorf("URL %s: %w", u.Redacted(), err)
	}
	return t, nil
}

// parsePort parses a port number: decimal digits only, 1 to 65535.
func parsePort(s string) (uint16, bool) {
	if s == "" {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			return 0, false
		}
	}
	return uint16(n), n > 0
}

// isDomainName reports whether s is a DNS name a resolver would look up,
// as the net package decides it (RFC 1035, RFC 3696; '_' allowed).
func isDomainName(s string) bool {
	l := len(s)
	if l == 0 || l > MaxHostLen+1 || l == MaxHostLen+1 && s[l-1] != '.' {
		return false
	}
	last := byte('.')
	nonNumeric := false // a letter, '-' or '_' seen: not an IPv4-looking name
	partlen := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_':
			nonNumeric = true
			partlen++
		case '0' <= c && c <= '9':
			partlen++
		case c == '-':
			if last == '.' { // a label starts with '-'
				return false
			}
			partlen++
			nonNumeric = true
		case c == '.':
			if last == '.' || last == '-' { // an empty label, or one ending with '-'
				return false
			}
			if partlen > 63 {
				return false
			}
			partlen = 0
		default:
			return false
		}
		last = c
	}
	return last != '-' && partlen <= 63 && nonNumeric
}
