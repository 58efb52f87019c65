package exitnode_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/farmgate/farmgate/exitnode"
)

func TestCheckAddr(t *testing.T) {
	t.Parallel()
	allowLoop := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	allow6 := []netip.Prefix{netip.MustParsePrefix("::1/128")}
	tests := []struct {
		name  string
		ip    string
		allow []netip.Prefix
		ok    bool
	}{
		{"public v4", "93.184.216.34", nil, true},
		{"public v4 edge of 10/8", "11.0.0.0", nil, true},
		{"this network 0/8", "0.0.0.0", nil, false},
		{"0/8 high", "0.255.255.255", nil, false},
		{"rfc1918 10/8", "10.1.2.3", nil, false},
		{"rfc1918 172.16/12", "172.16.0.1", nil, false},
		{"rfc1918 172.31", "172.31.255.255", nil, false},
		{"172.32 is public", "172.32.0.1", nil, true},
		{"rfc1918 192.168/16", "192.168.1.1", nil, false},
		{"cgnat 100.64/10", "100.64.0.1", nil, false},
		{"cgnat high", "100.127.255.255", nil, false},
		{"100.128 is public", "100.128.0.1", nil, true},
		{"loopback", "127.0.0.1", nil, false},
		{"loopback other", "127.255.0.9", nil, false},
		{"loopback allowed", "127.0.0.1", allowLoop, true},
		{"link-local metadata", "169.254.169.254", nil, false},
		{"ietf 192.0.0/24", "192.0.0.8", nil, false},
		{"test-net-1", "192.0.2.1", nil, false},
		{"test-net-2", "198.51.100.7", nil, false},
		{"test-net-3", "203.0.113.9", nil, false},
		{"benchmark 198.18/15", "198.19.255.1", nil, false},
		{"multicast", "224.0.0.1", nil, false},
		{"multicast high", "239.255.255.250", nil, false},
		{"reserved 240/4", "240.0.0.1", nil, false},
		{"broadcast", "255.255.255.255", nil, false},
		{"allow does not leak", "10.0.0.1", allowLoop, false},

		{"public v6", "2606:4700::1111", nil, true},
		{"v6 unspecified", "::", nil, false},
		{"v6 loopback", "::1", nil, false},
		{"v6 loopback allowed", "::1", allow6, true},
		{"v4-compatible", "::7f00:1", nil, false},
		{"v4-compatible public", "::5db8:d822", nil, false},
		{"v4-mapped loopback", "::ffff:127.0.0.1", nil, false},
		{"v4-mapped metadata", "::ffff:169.254.169.254", nil, false},
		{"v4-mapped rfc1918", "::ffff:10.0.0.1", nil, false},
		{"v4-mapped public", "::ffff:93.184.216.34", nil, true},
		{"v4-mapped loopback allowed by v4 prefix", "::ffff:127.0.0.1", allowLoop, true},
		{"v4-translated", "::ffff:0:93.184.216.34", nil, false},
		{"nat64 loopback", "64:ff9b::7f00:1", nil, false},
		{"nat64 metadata", "64:ff9b::169.254.169.254", nil, false},
		{"nat64 public", "64:ff9b::93.184.216.34", nil, true},
		{"nat64 local-use", "64:ff9b:1::5db8:d822", nil, false},
		{"6to4 loopback", "2002:7f00:1::1", nil, false},
		{"6to4 rfc1918", "2002:c0a8:101::", nil, false},
		{"6to4 public", "2002:5db8:d822::1", nil, true},
		{"teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2", nil, false},
		{"documentation", "2001:db8::1", nil, false},
		{"documentation 3fff", "3fff::1", nil, false},
		{"discard-only", "100::1", nil, false},
		{"ula fc", "fc00::1", nil, false},
		{"ula fd", "fd12:3456::1", nil, false},
		{"link-local", "fe80::1", nil, false},
		{"link-local zoned", "fe80::1%eth0", nil, false},
		{"site-local", "fec0::1", nil, false},
		{"multicast v6", "ff02::1", nil, false},
		{"multicast v6 global", "ff0e::1", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := exitnode.CheckAddr(netip.MustParseAddr(tc.ip), tc.allow)
			if tc.ok && err != nil {
				t.Fatalf("CheckAddr(%s) = %v, want allowed", tc.ip, err)
			}
			if !tc.ok && !errors.Is(err, exitnode.ErrDestinationForbidden) {
				t.Fatalf("CheckAddr(%s) = %v, want ErrDestinationForbidden", tc.ip, err)
			}
		})
	}
	if err := exitnode.CheckAddr(netip.Addr{}, nil); !errors.Is(err, exitnode.ErrDestinationForbidden) {
		t.Errorf("CheckAddr(invalid) = %v, want forbidden", err)
	}
}

func TestDefaultDenyIsACopy(t *testing.T) {
	t.Parallel()
	d := exitnode.DefaultDeny()
	d[0] = netip.MustParsePrefix("8.8.8.0/24")
	if exitnode.CheckAddr(netip.MustParseAddr("0.0.0.1"), nil) == nil {
		t.Fatal("mutating DefaultDeny's result changed the policy")
	}
}
