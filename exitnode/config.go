package exitnode

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// Version is the exit node's protocol and software version, reported in Info.
const Version = "0.1.0"

// Config of one exit node. Every field documents its unit and default; a zero
// MaxTunnels or timeout means the default (see DefaultConfig).
type Config struct {
	// ID names the exit to gateways and operators. Required.
	ID string
	// DC is the datacenter the exit runs in (e.g. "eu"). Optional, default "".
	DC string
	// Pool is the IP pool the exit belongs to (e.g. "resi"). Optional, default "".
	Pool string
	// Country is the ISO 3166 alpha-2 code of the egress IPs, case-insensitive
	// here and stored upper-case by New. Optional, default "".
	Country string
	// City of the egress IPs. Optional, default "".
	City string

	// Egress lists the IPs this exit may bind outgoing sockets to. A request
	// names one in X-Farmgate-Egress; without it one is picked at random.
	// Default empty: the OS chooses the source address.
	Egress []netip.Addr

	// Token is the gateway↔exit shared secret expected as
	// "Proxy-Authorization: Bearer <token>". Required (non-empty).
	Token string

	// AllowDest lists destination prefixes allowed despite the deny list
	// (DefaultDeny). Default empty; the demo and the tests allow 127.0.0.0/8.
	AllowDest []netip.Prefix

	// MaxTunnels bounds concurrent CONNECT tunnels plus in-flight forwarded HTTP
	// requests; beyond it the exit answers 503 exit_busy. Default 10000.
	MaxTunnels int

	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// DialTimeout bounds resolving and dialling a destination (all its
	// addresses together), and for a forwarded request the wait for the
	// destination's answer to start. Keep it below the gateways'
	// ExitReplyTimeout (15s), so that a slow destination is reported as
	// such and not as a silent exit. Default 10s.
	DialTimeout time.Duration
	// IdleTimeout closes a tunnel that moved no byte in either direction for
	// this long (measured by the kernel, see watchIdle), closes idle
	// keep-alive connections from gateways, and bounds the wait for a
	// forwarded request's response headers. Default 5m.
	IdleTimeout time.Duration

	// Resolver resolves destination names. Default nil: net.DefaultResolver.
	Resolver *net.Resolver

	// Rand picks an egress IP when the request names none. It is used under a
	// mutex. Default nil: a randomly seeded source.
	Rand *rand.Rand
}

// Defaults of the Config fields that have one.
const (
	DefaultMaxTunnels        = 10000
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultDialTimeout       = 10 * time.Second
	DefaultIdleTimeout       = 5 * time.Minute
)

// DefaultConfig returns a Config with every default filled in. ID and Token
// must still be set.
func DefaultConfig() Config {
	return Config{
		MaxTunnels:        DefaultMaxTunnels,
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
		DialTimeout:       DefaultDialTimeout,
		IdleTimeout:       DefaultIdleTimeout,
	}
}

// withDefaults returns c with zero-valued fields replaced by their default and
// Country upper-cased.
func (c Config) withDefaults() Config {
	if c.MaxTunnels == 0 {
		c.MaxTunnels = DefaultMaxTunnels
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	c.Country = strings.ToUpper(c.Country)
	c.Egress = append([]netip.Addr(nil), c.Egress...)
	for i, ip := range c.Egress {
		c.Egress[i] = ip.Unmap()
	}
	c.AllowDest = append([]netip.Prefix(nil), c.AllowDest...)
	return c
}

// Validate reports the first invalid field, named, as in
// "exit config: token: required". Zero MaxTunnels and timeouts are valid (they
// mean the default).
func (c Config) Validate() error {
	if err := c.validate(); err != nil {
		return fmt.Errorf("exit config: %w", err)
	}
	return nil
}

func (c Config) validate() error {
	if strings.TrimSpace(c.ID) == "" {
		return errors.New("id: required")
	}
	if c.Token == "" {
		return errors.New("token: required")
	}
	if c.Country != "" {
		if len(c.Country) != 2 || !isAlpha(c.Country) {
			return fmt.Errorf("country: %q is not an ISO 3166 alpha-2 code", c.Country)
		}
	}
	seen := make(map[netip.Addr]bool, len(c.Egress))
	for i, ip := range c.Egress {
		if !ip.IsValid() {
			return fmt.Errorf("egress[%d]: invalid address", i)
		}
		if ip.Unmap().IsUnspecified() || ip.Unmap().IsMulticast() {
			return fmt.Errorf("egress[%d]: %s is not a unicast address", i, ip)
		}
		if ip.Zone() != "" {
			return fmt.Errorf("egress[%d]: %s: zones are not supported", i, ip)
		}
		if seen[ip.Unmap()] {
			return fmt.Errorf("egress[%d]: %s listed twice", i, ip)
		}
		seen[ip.Unmap()] = true
	}
	for i, p := range c.AllowDest {
		if !p.IsValid() {
			return fmt.Errorf("allow_dest[%d]: invalid prefix", i)
		}
	}
	if c.MaxTunnels < 0 {
		return fmt.Errorf("max_tunnels: %d is negative", c.MaxTunnels)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"read_header_timeout", c.ReadHeaderTimeout},
		{"dial_timeout", c.DialTimeout},
		{"idle_timeout", c.IdleTimeout},
	} {
		if d.v < 0 {
			return fmt.Errorf("%s: %s is negative", d.name, d.v)
		}
	}
	return nil
}

func isAlpha(s string) bool {
	for i := 0; i < len(s); i++ {
		b := s[i] | 0x20
		if b < 'a' || b > 'z' {
			return false
		}
	}
	return true
}

// Info is what an exit reports about itself to gateways (GET /farmgate/info).
type Info = wire.Info
