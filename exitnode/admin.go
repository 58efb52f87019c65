package exitnode

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/farmgate/farmgate/internal/adminhttp"
)

// AdminConfig wires an exit's operator listener (farmgate exit --admin).
// Every field is optional.
type AdminConfig struct {
	// Gatherer serves /metrics. Default nil: no /metrics.
	Gatherer prometheus.Gatherer
	// Token, when set, is required as "Authorization: Bearer TOKEN" from
	// clients not on loopback, as on a gateway's admin listener. Default
	// "": loopback clients only (the probes excepted).
	Token string
	// Members lists the gossip members as this exit sees them, for
	// /api/cluster. Default nil: an empty list.
	Members func() any
	// Ready adds conditions of the process to /readyz (not draining): a
	// non-nil error says why. Default nil: none.
	Ready func() error
}

// AdminHandler returns the exit's admin API:
//
//	GET /healthz      200 while the process serves
//	GET /readyz       200 when the exit can take tunnels (Health), else 503 and why
//	GET /metrics      Prometheus text format
//	GET /api/exit     this exit: id, DC, pool, egress IPs, tunnels
//	GET /api/cluster  gossip members as this exit sees them
func (s *Server) AdminHandler(cfg AdminConfig) http.Handler {
	mux := http.NewServeMux()
	adminhttp.Probes(mux, func() error {
		if cfg.Ready != nil {
			if err := cfg.Ready(); err != nil {
				return err
			}
		}
		return s.Health()
	})
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /api/exit", func(w http.ResponseWriter, r *http.Request) {
		adminhttp.WriteJSON(w, http.StatusOK, map[string]any{"info": s.Info(), "active_tunnels": s.ActiveTunnels(), "max_tunnels": s.cfg.MaxTunnels})
	})
	mux.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Members == nil {
			adminhttp.WriteJSON(w, http.StatusOK, []any{})
			return
		}
		adminhttp.WriteJSON(w, http.StatusOK, cfg.Members())
	})
	return adminhttp.Guard(cfg.Token, mux)
}

var (
	descActive = prometheus.NewDesc("farmgate_exitnode_active_tunnels", "Tunnels and forwarded requests open through this exit.", nil, nil)
	descMax    = prometheus.NewDesc("farmgate_exitnode_max_tunnels", "The exit's --max-tunnels.", nil, nil)
	descReady  = prometheus.NewDesc("farmgate_exitnode_ready", "1 when the exit can take tunnels (not shutting down, every egress IP bindable).", nil, nil)
	descEgress = prometheus.NewDesc("farmgate_exitnode_egress_ips", "Egress IPs the exit sends from.", nil, nil)
)

// collector exports the exit's own state at scrape time.
type collector struct{ s *Server }

var _ prometheus.Collector = collector{}

// Collector returns the exit's Prometheus collector; register it once.
func (s *Server) Collector() prometheus.Collector { return collector{s} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descActive, descMax, descReady, descEgress} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	ready := 1.0
	if c.s.Health() != nil {
		ready = 0
	}
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(c.s.ActiveTunnels()))
	ch <- prometheus.MustNewConstMetric(descMax, prometheus.GaugeValue, float64(c.s.cfg.MaxTunnels))
	ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready)
	ch <- prometheus.MustNewConstMetric(descEgress, prometheus.GaugeValue, float64(len(c.s.cfg.Egress)))
}
