package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus series. Label sets are bounded: no
// destination hosts and no session ids, only pools, exits, DCs, customers and
// the fixed error reasons.
type metrics struct {
	opened    *prometheus.CounterVec
	active    *prometheus.GaugeVec
	failed    *prometheus.CounterVec
	setup     *prometheus.HistogramVec
	byteCount *prometheus.CounterVec
	authFails *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "farmgate_tunnels_opened_total",
			Help: "Tunnels (CONNECT) and forwarded requests (HTTP) set up through an exit.",
		}, []string{"kind", "pool", "dc", "exit"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "farmgate_tunnels_active",
			Help: "Tunnels and forwarded requests in progress.",
		}, []string{"pool", "exit"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "farmgate_tunnels_failed_total",
			Help: "Tunnels and requests refused or failed, by the X-Farmgate-Error reason the customer got.",
		}, []string{"reason", "pool"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "farmgate_tunnel_setup_seconds",
			Help:    "Time from picking an exit to its answer (tunnel up or response headers).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"pool"}),
		byteCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "farmgate_bytes_total",
			Help: "Bytes on customers' connections, as billed: up (from the customer) and down (to the customer), heads included.",
		}, []string{"direction", "pool", "customer"}),
		authFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "farmgate_auth_failures_total",
			Help: "Requests refused before picking an exit, by reason.",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.opened, m.active, m.failed, m.setup, m.byteCount, m.authFails)
	}
	return m
}

func (m *metrics) tunnelOpened(kind, pool, dc, exit string, setup time.Duration) {
	m.opened.WithLabelValues(kind, pool, dc, exit).Inc()
	m.active.WithLabelValues(pool, exit).Inc()
	m.setup.WithLabelValues(pool).Observe(setup.Seconds())
}

func (m *metrics) tunnelClosed(pool, exit string) {
	m.active.WithLabelValues(pool, exit).Dec()
}

// refused counts a customer who got an error reply; pool is "" before the
// customer was admitted.
func (m *metrics) refused(r reply, pool string) {
	if refusals[r.reason].login {
		m.authFails.WithLabelValues(r.reason).Inc()
	}
	m.failed.WithLabelValues(r.reason, pool).Inc()
}

func (m *metrics) bytes(pool, customer string, up, down int64) {
	if up > 0 {
		m.byteCount.WithLabelValues("up", pool, customer).Add(float64(up))
	}
	if down > 0 {
		m.byteCount.WithLabelValues("down", pool, customer).Add(float64(down))
	}
}
