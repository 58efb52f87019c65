package exitnode

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// DialFrom dials addr the way a route bound to local does (policy, binding,
// IP_BIND_ADDRESS_NO_PORT when noPort).
func DialFrom(ctx context.Context, local netip.Addr, allow []netip.Prefix, addr string, noPort bool) (net.Conn, error) {
	d := &destDialer{allow: allow, timeout: 5 * time.Second, local: local}
	if !noPort {
		d.noPortOff = true
	}
	return d.DialContext(ctx, "tcp", addr)
}

var ParseTarget = parseTarget

// EgressFor runs the X-Farmgate-Egress check on header values.
func (s *Server) EgressFor(vals []string) (netip.Addr, error) {
	rt, err := s.routeFor(vals)
	if err != nil {
		return netip.Addr{}, err
	}
	return rt.local, nil
}

var ErrBadEgress = errBadEgress
