package redisbreaker

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	descUp      = prometheus.NewDesc("farmgate_redis_up", "1 while Redis answers (the breaker is closed), 0 while calls fail fast.", nil, nil)
	descOpens   = prometheus.NewDesc("farmgate_redis_breaker_opens_total", "Times Redis stopped answering and the breaker opened.", nil, nil)
	descFast    = prometheus.NewDesc("farmgate_redis_calls_failed_fast_total", "Redis calls refused at once by the open breaker.", nil, nil)
	descConns   = prometheus.NewDesc("farmgate_redis_pool_connections", "Connections in the Redis client's pool, by state.", []string{"state"}, nil)
	descTimeout = prometheus.NewDesc("farmgate_redis_pool_timeouts_total", "Waits for a free connection of the Redis client's pool that timed out.", nil, nil)
)

// collector exports the breaker's state and the client's pool statistics.
type collector struct{ b *Breaker }

var _ prometheus.Collector = collector{}

// Collector returns the breaker's Prometheus collector: whether Redis
// answers, how often the breaker opened and refused calls, and the client's
// connection pool. Register it once.
func (b *Breaker) Collector() prometheus.Collector { return collector{b} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descOpens, descFast, descConns, descTimeout} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	up := 1.0
	if c.b.Open() {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descOpens, prometheus.CounterValue, float64(c.b.opens.Load()))
	ch <- prometheus.MustNewConstMetric(descFast, prometheus.CounterValue, float64(c.b.fastAll.Load()))
	if st := c.b.rdb.PoolStats(); st != nil {
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(st.IdleConns), "idle")
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(st.TotalConns-st.IdleConns), "in_use")
		ch <- prometheus.MustNewConstMetric(descTimeout, prometheus.CounterValue, float64(st.Timeouts))
	}
}
