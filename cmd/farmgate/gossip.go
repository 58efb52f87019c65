package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/farmgate/farmgate/cluster"
)

// gossipSettings are the flags shared by gateways and exits for joining the
// farm's memberlist cluster. Gossip is off unless --gossip-listen or --join
// is given.
type gossipSettings struct {
	listen, advertise, keyFile, label, profile string
	join                                       []string
	insecure                                   bool
	// rejoin is --gossip-rejoin-interval; 0 keeps the profile's.
	rejoin time.Duration
	// listenDefaulted is set when listen came from --listen's host, not
	// from --gossip-listen.
	listenDefaulted bool
}

// defaultGossipPort is memberlist's port, used with --listen's host when
// --gossip-listen is not given.
const defaultGossipPort = "7946"

// gossipFlags declares the gossip flags; the returned func reads them once
// parsed. nodeListen is the node's --listen address: its host, with port
// 7946, is the gossip address when --gossip-listen is not given, so that
// several nodes on one host, each on its own address, do not collide.
func gossipFlags(fs *flag.FlagSet) func(nodeListen string) (gossipSettings, error) {
	listen := fs.String("gossip-listen", "", "gossip (memberlist) listen address, TCP and UDP; empty: the host of --listen, port 7946 (and no gossip without --join)")
	advertise := fs.String("gossip-advertise", "", "address other nodes reach this one's gossip at (behind NAT or on a multi-homed host)")
	join := fs.String("join", "", "gossip seeds, HOST:PORT[,HOST:PORT...]: a few gateways and exits of every DC, the same list on every node")
	keyFile := fs.String("gossip-key-file", "", "file of base64 AES keys (16, 24 or 32 bytes; farmgate gossip-key makes one), one per line, the first primary (required with gossip; re-read on SIGHUP)")
	label := fs.String("gossip-label", "farmgate", "cluster label: farms with different labels never merge")
	profile := fs.String("gossip-profile", cluster.ProfileLAN, "gossip timings, the same on every node: lan when the whole farm is in one DC, wan when it spans DCs")
	rejoin := fs.String("gossip-rejoin-interval", "", "how often a node that lost members, or sees none of its seeds, tries the seeds and the departed members' last addresses again, e.g. 5s; empty: the profile's (15s lan, 20s wan)")
	return func(nodeListen string) (gossipSettings, error) {
		s := gossipSettings{listen: *listen, advertise: *advertise, keyFile: *keyFile, label: *label, profile: *profile}
		if *rejoin != "" {
			d, err := time.ParseDuration(*rejoin)
			if err != nil || d <= 0 {
				return s, usageError{fmt.Errorf("--gossip-rejoin-interval: want a positive duration such as 5s, got %q", *rejoin)}
			}
			s.rejoin = d
		}
		for a := range strings.SplitSeq(*join, ",") {
			if a = strings.TrimSpace(a); a != "" {
				s.join = append(s.join, a)
			}
		}
		if !s.enabled() {
			return s, nil
		}
		if s.listen == "" {
			host, _, err := net.SplitHostPort(nodeListen)
			if err != nil {
				return s, usageError{fmt.Errorf("--listen: %q: want host:port", nodeListen)}
			}
			if host != "" && net.ParseIP(host) == nil {
				return s, usageError{fmt.Errorf("--gossip-listen: required when --listen names a host (%q) rather than an IP address: give IP:%s", host, defaultGossipPort)}
			}
			s.listen, s.listenDefaulted = net.JoinHostPort(host, defaultGossipPort), true
		}
		if s.keyFile == "" {
			return s, usageError{fmt.Errorf("--gossip-key-file: required when gossip is on (--gossip-listen or --join)")}
		}
		if s.profile != cluster.ProfileLAN && s.profile != cluster.ProfileWAN {
			return s, usageError{fmt.Errorf("--gossip-profile: want lan or wan, got %q", s.profile)}
		}
		return s, nil
	}
}

func (s gossipSettings) enabled() bool { return s.listen != "" || len(s.join) > 0 }

// config turns the settings into a cluster.Config for a node with meta.
func (s gossipSettings) config(meta cluster.Meta, logger *slog.Logger) cluster.Config {
	var c cluster.Config
	switch s.profile {
	case cluster.ProfileWAN:
		c = cluster.WANConfig()
	case cluster.ProfileLocal:
		c = cluster.LocalConfig()
	default:
		c = cluster.DefaultConfig()
	}
	c.BindAddr, c.AdvertiseAddr, c.Join = s.listen, s.advertise, s.join
	c.KeyFile, c.Label, c.Insecure = s.keyFile, s.label, s.insecure
	c.Meta, c.Logger = meta, logger
	if s.rejoin > 0 {
		c.RejoinInterval = s.rejoin
	}
	return c
}

// startError explains a cluster.New failure in terms of the flags.
func (s gossipSettings) startError(err error) error {
	if errors.Is(err, cluster.ErrAddrInUse) {
		from := ""
		if s.listenDefaulted {
			from = " (the host of --listen, port " + defaultGossipPort + ")"
		}
		return usageError{fmt.Errorf("--gossip-listen: %s%s is in use by another process, perhaps another farmgate on this host: give each node its own --gossip-listen address or port", s.listen, from)}
	}
	return usageError{fmt.Errorf("gossip: %w", err)}
}

// logStarted says how the node's start in the farm went: joined (with how
// many members it sees), alone waiting for others to join it (no --join),
// or alone because no seed answered yet; the rejoin loop keeps trying then,
// and logs "joined cluster" when a seed answers.
func (s gossipSettings) logStarted(logger *slog.Logger, role string, node *cluster.Cluster, cfg cluster.Config, attrs ...any) {
	n := node.NumMembers()
	attrs = append(attrs, "gossip", node.Addr(), "members", n)
	switch {
	case n > 1:
		logger.Info(role+" joined the farm", attrs...)
	case len(s.join) == 0:
		logger.Info(role+" gossip up, no --join: waiting for other nodes to join it", attrs...)
	default:
		attrs = append(attrs, "seeds", strings.Join(s.join, ","), "retry_every", cfg.RejoinInterval.String())
		logger.Warn(role+" is alone in the farm so far: no other node answered; it keeps trying the seeds", attrs...)
	}
}
