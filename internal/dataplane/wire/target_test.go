package wire

import (
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// label63 is a label of the longest length DNS allows.
var label63 = strings.Repeat("a", 63)

// name253 is a name of the longest length DNS allows (4 labels).
var name253 = label63 + "." + label63 + "." + label63 + "." + strings.Repeat("b", 61)

func TestParseTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		target string
		host   string // "" when refused
		port   uint16
	}{
		{"example.com:443", "example.com", 443},
		{"EXAMPLE.com.:80", "EXAMPLE.com.", 80},
		{"localhost:1", "localhost", 1},
		{"_srv.x-y.example:65535", "_srv.x-y.example", 65535},
		{"1.2.3.4:080", "1.2.3.4", 80},
		{"[::1]:80", "::1", 80},
		{"[::ffff:10.0.0.1]:1", "::ffff:10.0.0.1", 1},
		{"xn--r8jz45g.jp:443", "xn--r8jz45g.jp", 443},
		{name253 + ":443", name253, 443},
		{name253 + ".:443", name253 + ".", 443},
		{label63 + ".example:1", label63 + ".example", 1},
		{"0x7f.0.0.1:80", "0x7f.0.0.1", 80},

		// The port: digits only, 1 to 65535.
		{"127.0.0.1:+80", "", 0},
		{"a:-1", "", 0},
		{"a:0", "", 0},
		{"a:00", "", 0},
		{"a:65536", "", 0},
		{"a:99999999999999999999", "", 0},
		{"a: 80", "", 0},
		{"a:80 ", "", 0},
		{"a:0x50", "", 0},
		{"a:", "", 0},
		{"a", "", 0},
		{":443", "", 0},
		// The host.
		{name253 + "b:443", "", 0},
		{name253 + "b.:443", "", 0},
		{label63 + "a.example:1", "", 0},
		{"a..example:443", "", 0},
		{".example:443", "", 0},
		{".:443", "", 0},
		{"-a.example:443", "", 0},
		{"a-.example:443", "", 0},
		{"a.-b:443", "", 0},
		{"a b:80", "", 0},
		{"a\tb:80", "", 0},
		{"user@host:80", "", 0},
		{"a/b:80", "", 0},
		{`a\b:80`, "", 0},
		{"a%2e:80", "", 0},
		{"例え.jp:443", "", 0},
		{"1.2.3:80", "", 0},
		{"123:80", "", 0},
		{"1.2.3.4.5:80", "", 0},
		{"::1:80", "", 0},
		{"[1.2.3.4]:80", "", 0},
		{"[example.com]:80", "", 0},
		{"[fe80::1%eth0]:22", "", 0},
		{"[::1]x:80", "", 0},
		{"a:80:80", "", 0},
	}
	for _, tc := range tests {
		host, port, err := ParseTarget(tc.target)
		if tc.host == "" {
			if err == nil || !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseTarget(%q) = %q, %d, %v; want an ErrMalformed", tc.target, host, port, err)
			}
			continue
		}
		if err != nil || host != tc.host || port != tc.port {
			t.Errorf("ParseTarget(%q) = %q, %d, %v; want %q, %d", tc.target, host, port, err, tc.host, tc.port)
		}
	}
}

func TestURLTarget(t *testing.T) {
	t.Parallel()
	tests := []struct{ url, target string }{
		{"http://a.example/x", "a.example:80"},
		{"http://a.example:/x", "a.example:80"},
		{"https://a.example/", "a.example:443"},
		{"HTTP://a.example:8080", "a.example:8080"},
		{"http://user:pw@a.example/", "a.example:80"},
		{"http://[::1]:81/", "[::1]:81"},
		{"http://127.0.0.1:0/", ""},
		{"http://127.0.0.1:65536/", ""},
		{"http://a..b/", ""},
		{"http://" + name253 + "b/", ""},
		{"ftp://a.example/", ""},
		{"ws://a.example/", ""},
		{"http:a.example", ""},
		{"http:///x", ""},
		{"/x", ""},
		{"http://[fe80::1%25eth0]/", ""},
	}
	for _, tc := range tests {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tc.url, err)
		}
		got, err := URLTarget(u)
		if tc.target == "" {
			if err == nil || !errors.Is(err, ErrMalformed) {
				t.Errorf("URLTarget(%q) = %q, %v; want an ErrMalformed", tc.url, got, err)
			}
			continue
		}
		if err != nil || got != tc.target {
			t.Errorf("URLTarget(%q) = %q, %v; want %q", tc.url, got, err, tc.target)
		}
	}
}

// FuzzParseTarget checks what ParseTarget lets through: a host and port
// that rejoin to a target that parses the same, that an exit's dialer and
// resolver take as they are, and that names the same place as an http://
// URL.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"example.com:443", "[::1]:80", "1.2.3.4:65535", "a:+1", "[fe80::1%eth0]:22",
		"a b:1", "x:-1", "例え.jp:443", "[::ffff:10.0.0.1]:1", name253 + ":1", "a..b:1", "1.2.3:4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := ParseTarget(s)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseTarget(%q): %v does not wrap ErrMalformed", s, err)
			}
			return
		}
		if host == "" || port == 0 || len(host) > MaxHostLen+1 {
			t.Fatalf("ParseTarget(%q) = %q, %d", s, host, port)
		}
		joined := net.JoinHostPort(host, strconv.Itoa(int(port)))
		h2, p2, err := ParseTarget(joined)
		if err != nil || h2 != host || p2 != port {
			t.Fatalf("round trip of %q through %q: %q %d %v", s, joined, h2, p2, err)
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if ip.Zone() != "" {
				t.Fatalf("ParseTarget(%q) took a zone", s)
			}
		} else if strings.ContainsFunc(host, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) {
			t.Fatalf("ParseTarget(%q) took host %q", s, host)
		}
		u, err := url.Parse("http://" + joined + "/")
		if err != nil {
			t.Fatalf("target %q is no URL host: %v", joined, err)
		}
		if got, err := URLTarget(u); err != nil || got != joined {
			t.Fatalf("URLTarget(http://%s/) = %q, %v", joined, got, err)
		}
	})
}

// FuzzURLTarget checks that a URL's target is what ParseTarget takes, and
// that an http:// URL of a host and port that ParseTarget refuses is
// refused too.
func FuzzURLTarget(f *testing.F) {
	for _, s := range []string{"http://a.example/", "https://[::1]:8443/x", "http://127.0.0.1:0/", "http://h:65536/",
		"ftp://a/", "http://a:/", "http://u@a/", "http://%41/", "http://[fe80::1%25lo]/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := url.Parse(s)
		if err != nil {
			return
		}
		target, err := URLTarget(u)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("URLTarget(%q): %v does not wrap ErrMalformed", s, err)
			}
			if (u.Scheme == "http" || u.Scheme == "https") && u.Port() != "" && u.Opaque == "" {
				if CheckTarget(net.JoinHostPort(u.Hostname(), u.Port())) == nil {
					t.Fatalf("URLTarget(%q) refused a target that ParseTarget takes: %v", s, err)
				}
			}
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			t.Fatalf("URLTarget(%q) took scheme %q", s, u.Scheme)
		}
		if err := CheckTarget(target); err != nil {
			t.Fatalf("URLTarget(%q) = %q, which ParseTarget refuses: %v", s, target, err)
		}
	})
}
