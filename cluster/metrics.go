package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descMembers = prometheus.NewDesc("farmgate_gossip_members",
		"Members of the farm's gossip cluster as this node sees them, by role and state (alive, dead, left), this node included.", []string{"role", "state"}, nil)
	descHealth = prometheus.NewDesc("farmgate_gossip_health_score",
		"memberlist's awareness health score of this node: 0 is healthy, higher means it is slow to answer probes (its own network or CPU).", nil, nil)
)

// collector exports the cluster as this node sees it.
type collector struct{ c *Cluster }

var _ prometheus.Collector = collector{}

// Collector returns the node's gossip collector: members by role and state,
// and memberlist's health score. Register it once.
func (c *Cluster) Collector() prometheus.Collector { return collector{c} }

// HealthScore returns memberlist's awareness health score: 0 is healthy.
func (c *Cluster) HealthScore() int { return c.ml.GetHealthScore() }

func (m collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMembers
	ch <- descHealth
}

func (m collector) Collect(ch chan<- prometheus.Metric) {
	counts := map[[2]string]int{}
	for _, r := range []Role{RoleGateway, RoleExit} {
		for _, s := range []string{StateAlive, StateDead, StateLeft} {
			counts[[2]string{string(r), s}] = 0
		}
	}
	for _, mem := range m.c.Members() {
		counts[[2]string{string(mem.Role), mem.State}]++
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(n), k[0], k[1])
	}
	ch <- prometheus.MustNewConstMetric(descHealth, prometheus.GaugeValue, float64(m.c.HealthScore()))
}
