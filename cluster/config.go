package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// Profiles name memberlist's timing presets, chosen per deployment.
const (
	// ProfileLAN is memberlist.DefaultLANConfig: inside one data centre.
	ProfileLAN = "lan"
	// ProfileWAN is memberlist.DefaultWANConfig: across data centres.
	ProfileWAN = "wan"
	// ProfileLocal is a fast profile for one machine (demo, tests): probes
	// every 200 ms, gossip every 50 ms, push/pull every 5 s.
	ProfileLocal = "local"
)

// Config configures a [Cluster]. Start from [DefaultConfig] (LAN),
// [WANConfig] or [LocalConfig]; zero durations and counts are not replaced by
// defaults, they fail [Config.Validate].
type Config struct {
	// NodeName is the memberlist node name, unique in the cluster.
	// Default "": Meta.ID.
	NodeName string
	// BindAddr is the host:port the gossip listens on, TCP and UDP alike;
	// the host must be an IP address, port 0 picks a free port.
	// Default "0.0.0.0:7946".
	BindAddr string
	// AdvertiseAddr is the IP:port other nodes reach this one at (behind
	// NAT, or when BindAddr is 0.0.0.0 on a host with several addresses).
	// Port 0 means the bound port. Default "": derived from BindAddr (for
	// 0.0.0.0, memberlist picks the host's first private IP).
	AdvertiseAddr string
	// Join lists seed nodes, host:port. A failed join is logged and retried
	// by the rejoin loop, not fatal. Default nil: start a new cluster.
	Join []string
	// Profile is the timing preset: ProfileLAN, ProfileWAN or ProfileLocal.
	// Default ProfileLAN.
	Profile string

	// Keys is the gossip encryption keyring: AES keys of 16, 24 or 32
	// bytes, the first one primary (used to encrypt), the others accepted
	// to decrypt. Default nil. Set Keys or KeyFile, not both.
	Keys [][]byte
	// KeyFile names a file of base64 keys, one per line, the first primary.
	// [Cluster.ReloadKeys] re-reads it, so keys rotate without a restart.
	// Default "".
	KeyFile string
	// Insecure allows gossip without a key: for demos and tests only.
	// Without it a missing key is a Validate error. Default false.
	Insecure bool
	// Label is the memberlist cluster label, checked on every packet and
	// stream: two farms with different labels never merge. At most 255
	// bytes. Default "farmgate".
	Label string

	// Meta is what this node tells the cluster about itself. Required.
	Meta Meta
	// Egress lists this exit's egress IPs; they travel in gossip broadcasts
	// and push/pull state, not in Meta. Default nil.
	Egress []netip.Addr
	// Resolve, on gateways, fetches what Meta cannot carry (an exit's egress
	// IPs) when an exit joins or its EgressHash changes; it is called from
	// the cluster's worker goroutine with a context that expires after
	// ResolveTimeout, up to ResolveAttempts times. Default nil: use the
	// egress lists that exits gossip.
	Resolve func(ctx context.Context, m Meta) ([]netip.Addr, error)
	// ResolveTimeout bounds one Resolve call. Default 5s.
	ResolveTimeout time.Duration
	// ResolveAttempts is the number of Resolve calls for one exit before
	// the worker gives up until RetryInterval has passed. Default 3.
	ResolveAttempts int
	// RetryInterval is how often the worker retries exits it could not
	// resolve. Default 10s.
	RetryInterval time.Duration

	// RejoinInterval is the period of the rejoin loop, which re-joins the
	// seeds while this node sees fewer members than it once did (graceful
	// leaves lower that mark) or has never joined. Jittered by ±20%.
	// Default 15s (LAN), 20s (WAN), 2s (local): a healed partition is whole
	// again well within a minute; a rejoin is one push/pull per seed.
	RejoinInterval time.Duration
	// UpdateTimeout bounds the broadcast of a metadata change in
	// [Cluster.UpdateMeta]. Default 5s.
	UpdateTimeout time.Duration

	// Logger receives the cluster's events (component=cluster) and, at debug
	// level, memberlist's own log. Default nil: slog.Default().
	Logger *slog.Logger

	// now, when set (by tests, through export_test.go), replaces time.Now.
	now func() time.Time
	// wrapTransport, when set (by tests, through export_test.go), wraps the
	// network transport, e.g. to count bytes.
	wrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// DefaultConfig returns the LAN profile: memberlist.DefaultLANConfig timings,
// listening on 0.0.0.0:7946.
func DefaultConfig() Config {
	return Config{
		BindAddr:        "0.0.0.0:7946",
		Profile:         ProfileLAN,
		Label:           "farmgate",
		ResolveTimeout:  5 * time.Second,
		ResolveAttempts: 3,
		RetryInterval:   10 * time.Second,
		RejoinInterval:  15 * time.Second,
		UpdateTimeout:   5 * time.Second,
	}
}

// WANConfig returns the WAN profile (memberlist.DefaultWANConfig timings),
// for a cluster that spans data centres.
func WANConfig() Config {
	c := DefaultConfig()
	c.Profile = ProfileWAN
	c.RejoinInterval = 20 * time.Second
	return c
}

// LocalConfig returns the local profile for one machine: loopback, a free
// port, fast probes and gossip. For demos and tests.
func LocalConfig() Config {
	c := DefaultConfig()
	c.Profile = ProfileLocal
	c.BindAddr = "127.0.0.1:0"
	c.RejoinInterval = 2 * time.Second
	c.RetryInterval = time.Second
	c.ResolveTimeout = 2 * time.Second
	return c
}

// Validate reports the first wrong field of c, by name.
func (c *Config) Validate() error {
	if err := c.Meta.validate(); err != nil {
		return err
	}
	switch c.Profile {
	case ProfileLAN, ProfileWAN, ProfileLocal:
	default:
		return fmt.Errorf("Profile %q: want %q, %q or %q", c.Profile, ProfileLAN, ProfileWAN, ProfileLocal)
	}
	if _, _, err := splitIPPort(c.BindAddr, true); err != nil {
		return fmt.Errorf("BindAddr %q: %w", c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitIPPort(c.AdvertiseAddr, false); err != nil {
			return fmt.Errorf("AdvertiseAddr %q: %w", c.AdvertiseAddr, err)
		}
	}
	for i, s := range c.Join {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return fmt.Errorf("Join[%d] %q: want host:port: %w", i, s, err)
		}
	}
	switch {
	case len(c.Keys) > 0 && c.KeyFile != "":
		return errors.New("Keys and KeyFile: set one, not both")
	case len(c.Keys) == 0 && c.KeyFile == "" && !c.Insecure:
		return errors.New("Keys: no gossip encryption key (set Keys or KeyFile; Insecure is for demos only)")
	}
	for i, k := range c.Keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return fmt.Errorf("Keys[%d]: %w", i, err)
		}
	}
	switch {
	case c.Label == "":
		return errors.New("Label: empty")
	case len(c.Label) > memberlist.LabelMaxSize:
		return fmt.Errorf("Label: %d bytes, at most %d", len(c.Label), memberlist.LabelMaxSize)
	case len(c.Egress) > 0 && c.Meta.Role != RoleExit:
		return errors.New("Egress: only exits have egress IPs")
	case len(c.Egress) > maxEgress:
		return fmt.Errorf("Egress: %d addresses, at most %d", len(c.Egress), maxEgress)
	case c.ResolveTimeout <= 0:
		return fmt.Errorf("ResolveTimeout %v: must be positive", c.ResolveTimeout)
	case c.ResolveAttempts < 1:
		return fmt.Errorf("ResolveAttempts %d: at least 1", c.ResolveAttempts)
	case c.RetryInterval <= 0:
		return fmt.Errorf("RetryInterval %v: must be positive", c.RetryInterval)
	case c.RejoinInterval <= 0:
		return fmt.Errorf("RejoinInterval %v: must be positive", c.RejoinInterval)
	case c.UpdateTimeout <= 0:
		return fmt.Errorf("UpdateTimeout %v: must be positive", c.UpdateTimeout)
	}
	for i, a := range c.Egress {
		if !a.IsValid() {
			return fmt.Errorf("Egress[%d]: invalid address", i)
		}
	}
	return nil
}

// splitIPPort parses IP:port. With anyHost, an empty host means 0.0.0.0.
func splitIPPort(s string, anyHost bool) (netip.Addr, int, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("want ip:port: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return netip.Addr{}, 0, fmt.Errorf("bad port %q", port)
	}
	if host == "" && anyHost {
		return netip.IPv4Unspecified(), p, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("host must be an IP address: %w", err)
	}
	return ip.Unmap(), p, nil
}

// memberlistConfig builds memberlist's configuration for the profile.
func (c *Config) memberlistConfig() *memberlist.Config {
	var mc *memberlist.Config
	switch c.Profile {
	case ProfileWAN:
		mc = memberlist.DefaultWANConfig()
	case ProfileLocal:
		mc = memberlist.DefaultLocalConfig()
		mc.ProbeInterval = 200 * time.Millisecond
		mc.ProbeTimeout = 100 * time.Millisecond
		mc.GossipInterval = 50 * time.Millisecond
		mc.PushPullInterval = 5 * time.Second
		mc.SuspicionMult = 3
		mc.RetransmitMult = 4 // as LAN: user broadcasts must reach small clusters too
		mc.TCPTimeout = time.Second
		mc.GossipToTheDeadTime = 5 * time.Second
	default:
		mc = memberlist.DefaultLANConfig()
	}
	return mc
}
