package exitnode_test

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/farmgate/farmgate/exitnode"
)

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"example.com:443", "[::1]:80", "1.2.3.4:0", "host", ":80", "a:65536",
		"a:+1", "[fe80::1%eth0]:22", "a b:1", "x:-1", "例え.jp:443", "[::ffff:10.0.0.1]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		host, port, err := exitnode.ParseTarget(s)
		if err != nil {
			return
		}
		if host == "" || port == 0 {
			t.Fatalf("ParseTarget(%q) = %q, %d without error", s, host, port)
		}
		// What is accepted re-joins to something that parses the same.
		h2, p2, err := exitnode.ParseTarget(net.JoinHostPort(host, strconv.Itoa(int(port))))
		if err != nil || h2 != host || p2 != port {
			t.Fatalf("round trip of %q: %q %d %v", s, h2, p2, err)
		}
	})
}

func FuzzEgressHeader(f *testing.F) {
	s, err := exitnode.New(testConfig(), nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, v := range []string{"127.0.0.2", " 127.0.0.5 ", "::ffff:127.0.0.3", "127.0.0.9", "", "x", "127.0.0.2%lo", "0x7f.0.0.2"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ip, err := s.EgressFor([]string{v})
		if err != nil {
			if !errors.Is(err, exitnode.ErrBadEgress) {
				t.Fatalf("EgressFor(%q) = %v, not a bad_egress error", v, err)
			}
			return
		}
		found := false
		for _, e := range s.Info().Egress {
			found = found || e == ip
		}
		if !found {
			t.Fatalf("EgressFor(%q) = %s, not a configured egress IP", v, ip)
		}
	})
}

// FuzzCheckAddr checks the policy's invariants on arbitrary addresses: an
// IPv4 address hidden in IPv6 gets the verdict of the IPv4 address.
func FuzzCheckAddr(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1})
	f.Add(netip.MustParseAddr("::ffff:10.0.0.1").AsSlice())
	f.Add(netip.MustParseAddr("64:ff9b::a9fe:a9fe").AsSlice())
	f.Add(netip.MustParseAddr("2002:0808:0808::1").AsSlice())
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, ok := netip.AddrFromSlice(b)
		if !ok {
			return
		}
		err := exitnode.CheckAddr(ip, nil)
		if err != nil && !errors.Is(err, exitnode.ErrDestinationForbidden) {
			t.Fatalf("CheckAddr(%s) = %v", ip, err)
		}
		var v4 netip.Addr
		a := ip.As16()
		switch {
		case ip.Is4In6():
			v4 = ip.Unmap()
		case netip.MustParsePrefix("64:ff9b::/96").Contains(ip):
			v4 = netip.AddrFrom4([4]byte(a[12:16]))
		case netip.MustParsePrefix("2002::/16").Contains(ip):
			v4 = netip.AddrFrom4([4]byte(a[2:6]))
		default:
			return
		}
		if (exitnode.CheckAddr(v4, nil) == nil) != (err == nil) {
			t.Fatalf("CheckAddr(%s) = %v but CheckAddr(%s) = %v", ip, err, v4, exitnode.CheckAddr(v4, nil))
		}
	})
}
