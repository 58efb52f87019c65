package exitnode

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrDestinationForbidden is wrapped by every error CheckAddr returns and by
// dial errors caused by the destination policy.
var ErrDestinationForbidden = errors.New("destination forbidden")

// defaultDeny is the deny list; see DefaultDeny.
var defaultDeny = []netip.Prefix{
	// IPv4
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("10.0.0.0/8"),      // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),   // CGNAT, RFC 6598
	netip.MustParsePrefix("127.0.0.0/8"),     // loopback
	netip.MustParsePrefix("169.254.0.0/16"),  // link-local, cloud metadata
	netip.MustParsePrefix("172.16.0.0/12"),   // RFC 1918
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // TEST-NET-1
	netip.MustParsePrefix("192.168.0.0/16"),  // RFC 1918
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // TEST-NET-2
	netip.MustParsePrefix("203.0.113.0/24"),  // TEST-NET-3
	netip.MustParsePrefix("224.0.0.0/4"),     // multicast
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, incl. 255.255.255.255
	// IPv6
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated), incl. :: and ::1
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated, RFC 2765
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64, RFC 8215 (embedding unknown)
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo (embeds an obfuscated IPv4)
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("3fff::/20"),       // documentation, RFC 9637
	netip.MustParsePrefix("fc00::/7"),        // unique local
	netip.MustParsePrefix("fe80::/10"),       // link-local
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	netip.MustParsePrefix("ff00::/8"),        // multicast
}

// Prefixes whose addresses embed an IPv4 address that is checked instead.
var (
	nat64WellKnown = netip.MustParsePrefix("64:ff9b::/96") // RFC 6052: v4 in the last 32 bits
	sixToFour      = netip.MustParsePrefix("2002::/16")    // RFC 3056: v4 in bits 16..47
)

// DefaultDeny returns the destination prefixes an exit refuses unless
// Config.AllowDest allows them. Beyond these, CheckAddr unmaps IPv4-mapped
// addresses (::ffff:0:0/96) and extracts the IPv4 address embedded in NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) addresses, then checks that IPv4
// address; Teredo, local-use NAT64 and IPv4-compatible addresses are denied
// outright. The returned slice is a copy.
func DefaultDeny() []netip.Prefix {
	return append([]netip.Prefix(nil), defaultDeny...)
}

// CheckAddr returns nil if the exit may connect to ip, else an error wrapping
// ErrDestinationForbidden that names the address and the denied range. An
// address inside one of allow is always allowed. A zone is ignored.
func CheckAddr(ip netip.Addr, allow []netip.Prefix) error {
	return checkAddr(ip, ip, allow)
}

// checkAddr checks ip; orig is the address as asked, for the error.
func checkAddr(orig, ip netip.Addr, allow []netip.Prefix) error {
	if !ip.IsValid() {
		return fmt.Errorf("check address %s: invalid: %w", orig, ErrDestinationForbidden)
	}
	ip = ip.WithZone("")
	for _, p := range allow {
		if p.Contains(ip) {
			return nil
		}
	}
	if ip.Is4In6() {
		return checkAddr(orig, ip.Unmap(), allow)
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64WellKnown.Contains(ip):
			return checkAddr(orig, netip.AddrFrom4([4]byte(b[12:16])), allow)
		case sixToFour.Contains(ip):
			return checkAddr(orig, netip.AddrFrom4([4]byte(b[2:6])), allow)
		}
	}
	for _, p := range defaultDeny {
		if p.Contains(ip) {
			if ip != orig.WithZone("") {
				return fmt.Errorf("check address %s: embeds %s in %s: %w", orig, ip, p, ErrDestinationForbidden)
			}
			return fmt.Errorf("check address %s: in %s: %w", orig, p, ErrDestinationForbidden)
		}
	}
	return nil
}
