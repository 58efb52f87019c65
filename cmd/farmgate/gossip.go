package main

import (
	"flag"
	"fmt"
	"log/slog"
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
}

func gossipFlags(fs *flag.FlagSet) func() (gossipSettings, error) {
	listen := fs.String("gossip-listen", "", "gossip (memberlist) listen address, TCP and UDP, e.g. 0.0.0.0:7946; empty with no --join: no gossip")
	advertise := fs.String("gossip-advertise", "", "address other nodes reach this one's gossip at (behind NAT or on a multi-homed host)")
	join := fs.String("join", "", "gossip seeds, HOST:PORT[,HOST:PORT]")
	keyFile := fs.String("gossip-key-file", "", "file of base64 AES keys, one per line, the first primary (required with gossip; re-read on SIGHUP)")
	label := fs.String("gossip-label", "farmgate", "cluster label: farms with different labels never merge")
	profile := fs.String("gossip-profile", cluster.ProfileLAN, "gossip timings: lan (inside a DC) or wan (across DCs)")
	rejoin := fs.String("gossip-rejoin-interval", "", "how often a node that lost members, or sees none of its seeds, tries the seeds and the departed members' last addresses again, e.g. 5s; empty: the profile's (15s lan, 20s wan)")
	return func() (gossipSettings, error) {
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
			s.listen = "0.0.0.0:7946"
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
