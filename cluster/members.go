package cluster

import (
	"cmp"
	"slices"
)

// Member is one node of the cluster as this node sees it, for the admin API.
type Member struct {
	// Name is the memberlist node name.
	Name string `json:"name"`
	// ID, Role, DC, Pool, Country, ProxyAddr and Version come from the
	// member's metadata.
	ID        string `json:"id"`
	Role      Role   `json:"role"`
	DC        string `json:"dc,omitempty"`
	Pool      string `json:"pool,omitempty"`
	Country   string `json:"country,omitempty"`
	ProxyAddr string `json:"proxy_addr,omitempty"`
	Version   string `json:"version,omitempty"`
	// Addr is the member's gossip address, host:port.
	Addr string `json:"addr"`
	// State is StateAlive, StateDead or StateLeft. memberlist does not
	// expose suspicion, so a suspect member shows as alive.
	State string `json:"state"`
	// Draining is set when the member drains itself or an operator drained
	// it (DrainExit).
	Draining bool `json:"draining"`
}

// Members returns every member this node knows, sorted by id then name,
// including those that left for a minute and failed ones for ten
// (leftRetention, deadRetention).
func (c *Cluster) Members() []Member {
	now := c.now().UnixNano()
	c.mu.Lock()
	out := make([]Member, 0, len(c.members))
	for _, r := range c.members {
		if expired(r, now) {
			continue // the worker forgets it at its next tick
		}
		m := Member{
			Name: r.name, ID: r.meta.ID, Role: r.meta.Role, DC: r.meta.DC, Pool: r.meta.Pool,
			Country: r.meta.Country, ProxyAddr: r.meta.ProxyAddr, Version: r.meta.Version,
			Addr: r.addr, State: r.state, Draining: r.meta.Draining,
		}
		if d, ok := c.drains[r.meta.ID]; ok && d.on && r.meta.Role == RoleExit {
			m.Draining = true
		}
		out = append(out, m)
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// NumMembers returns the number of members memberlist holds alive or
// suspect, this node included.
func (c *Cluster) NumMembers() int { return c.ml.NumMembers() }
