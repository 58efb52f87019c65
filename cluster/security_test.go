package cluster_test

import (
	"testing"
	"time"

	"github.com/farmgate/farmgate/cluster"
)

func TestNodesWithWrongKeyOrLabelAreRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opt  func(*cluster.Config)
	}{
		{"wrong key", func(c *cluster.Config) { c.Keys = [][]byte{key(9)} }},
		{"wrong label", func(c *cluster.Config) { c.Label = "other-farm" }},
		{"no key at all", func(c *cluster.Config) { c.Keys, c.Insecure = nil, true }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFarm(t, 2)
			intruder := startNode(t, exitMeta(9), nil, tc.opt, joining(f.gw.Addr(), f.exits[0].Addr()), withEgress(exitEgress(9)))
			// Give gossip time to misbehave: several probe and gossip rounds,
			// and at least one rejoin attempt of the intruder.
			time.Sleep(2500 * time.Millisecond)
			if n := intruder.NumMembers(); n != 1 {
				t.Errorf("intruder sees %d members, want only itself", n)
			}
			for _, c := range append([]*cluster.Cluster{f.gw}, f.exits...) {
				// 3, not 4; a busy machine can drop a member for a moment,
				// until it refutes.
				waitFor(t, settle, "every member sees the other 2", func() bool { return c.NumMembers() == 3 })
				for _, m := range c.Members() {
					if m.ID == "exit-9" {
						t.Errorf("intruder listed as %+v", m)
					}
				}
			}
			if _, ok := status(f.pool, "exit-9"); ok {
				t.Error("intruder reached the gateway's pool")
			}
		})
	}
}
