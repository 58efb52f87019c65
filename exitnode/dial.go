package exitnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/sockopt"
	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// Errors a destination dial fails with, besides ErrDestinationForbidden. The
// reply table in errors.go maps them to a status and an X-Farmgate-Error.
var (
	errBadTarget   = errors.New("bad target")
	errUnreachable = errors.New("destination unreachable")
)

// destDialer resolves a destination once, checks every address against the
// policy and dials exactly a checked address, from one source address.
type destDialer struct {
	resolver *net.Resolver
	allow    []netip.Prefix
	timeout  time.Duration
	// local is the source address to bind; invalid means the OS default.
	local netip.Addr
	// noPortOff disables IP_BIND_ADDRESS_NO_PORT; only tests set it, to show
	// what the option prevents.
	noPortOff bool
}

// parseTarget splits "host:port" into a host and a port by the farm's
// target rules (wire.ParseTarget), which gateways apply to their customers
// first: a target refused here is a malformed request, never a failure of
// the exit.
func parseTarget(addr string) (host string, port uint16, err error) {
	host, port, err = wire.ParseTarget(addr)
	if err != nil {
		return "", 0, fmt.Errorf("parse target: %w: %w", errBadTarget, err)
	}
	return host, port, nil
}

// lookup returns the addresses of host: the literal itself, or the resolver's
// answers in order.
func (d *destDialer) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	r := d.resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses: %w", host, errUnreachable)
	}
	return ips, nil
}

// DialContext dials addr ("host:port") for network "tcp", "tcp4" or "tcp6"
// (the family is decided by the destination's addresses and the source
// address). It has the signature of http.Transport.DialContext.
func (d *destDialer) DialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := parseTarget(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	ips, err := d.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	candidates := make([]netip.Addr, 0, len(ips))
	var denied error
	for _, ip := range ips {
		if err := CheckAddr(ip, d.allow); err != nil {
			if denied == nil {
				denied = err
			}
			continue
		}
		ip = ip.Unmap()
		if d.local.IsValid() && d.local.Is4() != ip.Is4() {
			continue // cannot reach this family from the bound source
		}
		candidates = append(candidates, ip)
	}
	if len(candidates) == 0 {
		if denied != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, denied)
		}
		return nil, fmt.Errorf("dial %s: no address of the egress family %s: %w", addr, d.local, errUnreachable)
	}
	// No TCP keepalive probes: a tunnel ends on the exit's idle timeout
	// and a pooled HTTP connection on IdleConnTimeout, and the four
	// setsockopt calls per dial are not free.
	nd := net.Dialer{KeepAlive: -1}
	var local netip.AddrPort
	if d.local.IsValid() {
		local = netip.AddrPortFrom(d.local, 0)
		if !d.noPortOff {
			nd.Control = sockopt.BindAddressNoPort
		}
	}
	var lastErr error
	for i, ip := range candidates {
		actx := ctx
		// Share what is left of the budget among the remaining addresses,
		// as net.Dialer does for a name with several addresses.
		if dl, ok := ctx.Deadline(); ok && len(candidates)-i > 1 {
			share := time.Until(dl) / time.Duration(len(candidates)-i)
			var c context.CancelFunc
			actx, c = context.WithTimeout(ctx, share)
			defer c()
		}
		var conn net.Conn
		var err error
		if local.IsValid() {
			// DialTCP takes the checked address as it is: no parsing, no
			// resolver, no dial racing.
			conn, err = nd.DialTCP(actx, "tcp", local, netip.AddrPortFrom(ip, port))
		} else {
			conn, err = nd.DialContext(actx, "tcp", netip.AddrPortFrom(ip, port).String())
		}
		if err == nil {
			return conn, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dial %s: %w", addr, lastErr)
}
