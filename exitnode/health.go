package exitnode

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// HealthPath is the origin-form path a gateway GETs (with its token) to
// learn whether the exit can serve: its active health check.
const HealthPath = wire.HealthPath

// Health is what the exit answers at HealthPath when it can serve.
type Health = wire.Health

// errEgressUnavailable means an egress IP cannot be bound on this machine.
var errEgressUnavailable = errors.New("egress IP unavailable")

// Health reports whether the exit can take new tunnels: nil, or why not.
// It cannot while it shuts down, nor when one of its egress IPs cannot be
// bound (the address is gone from the machine): a gateway rotates over
// every egress IP, so a share of its tunnels would fail. Being at
// MaxTunnels is not unhealthy: the exit says busy per tunnel, and gateways
// count its capacity themselves. The check costs one socket per egress
// IP, bound and closed.
func (s *Server) Health() error {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return fmt.Errorf("health: shutting down: %w", errBusy)
	}
	for _, rt := range s.routes {
		if err := bindable(rt.local); err != nil {
			return fmt.Errorf("health: egress %s: %w: %w", rt.local, errEgressUnavailable, err)
		}
	}
	return nil
}

// bindable reports whether a socket can be bound to ip, as the tunnels'
// sockets are before they connect. A UDP socket takes no connection slot
// and sends nothing.
func bindable(ip netip.Addr) error {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return err
	}
	return c.Close()
}

// serveHealth answers a gateway's health check. An unhealthy answer is
// logged at debug level only: gateways ask every half second while it
// lasts, and the gateways log the state change.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.Health(); err != nil {
		status, reason := reply(err)
		s.log.Debug("health check failed", "reason", reason, "remote", r.RemoteAddr, "err", err)
		w.Header().Set(HeaderError, reason)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintln(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Health{Tunnels: s.ActiveTunnels(), MaxTunnels: s.cfg.MaxTunnels})
}
