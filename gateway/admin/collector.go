package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/farmgate/farmgate/pool"
)

// PoolCollector exports the pool's view of every exit at scrape time: state,
// load, latency, ejections and probe results. Labels are the exit's id, pool
// and DC (bounded by the farm's size).
type PoolCollector struct {
	p *pool.Pool
}

// NewPoolCollector returns a collector over p; register it once.
func NewPoolCollector(p *pool.Pool) *PoolCollector { return &PoolCollector{p: p} }

var _ prometheus.Collector = (*PoolCollector)(nil)

var (
	exitLabels  = []string{"exit", "pool", "dc"}
	descState   = prometheus.NewDesc("farmgate_exit_state", "1 for the state the exit is in (healthy, down, ejected, draining).", append(exitLabels, "state"), nil)
	descActive  = prometheus.NewDesc("farmgate_exit_active_tunnels", "Tunnels open through the exit.", exitLabels, nil)
	descLatency = prometheus.NewDesc("farmgate_exit_setup_latency_seconds", "EWMA of tunnel set-up time through the exit.", exitLabels, nil)
	descEject   = prometheus.NewDesc("farmgate_exit_ejections_total", "Passive ejections of the exit.", exitLabels, nil)
	descProbes  = prometheus.NewDesc("farmgate_exit_probes_total", "Active probe results.", append(exitLabels, "result"), nil)
	descExits   = prometheus.NewDesc("farmgate_exits", "Exits known to the gateway, by state.", []string{"state"}, nil)
)

var states = []string{pool.StateHealthy, pool.StateDown, pool.StateEjected, pool.StateDraining}

// Describe sends the descriptors.
func (c *PoolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descActive, descLatency, descEject, descProbes, descExits} {
		ch <- d
	}
}

// Collect reads the pool once.
func (c *PoolCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{}
	for _, e := range c.p.Exits() {
		l := []string{e.ID, e.Pool, e.DC}
		counts[e.State]++
		for _, s := range states {
			v := 0.0
			if s == e.State {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, append(l, s)...)
		}
		ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, float64(e.ActiveTunnels), l...)
		ch <- prometheus.MustNewConstMetric(descLatency, prometheus.GaugeValue, e.LatencyMS/1000, l...)
		ch <- prometheus.MustNewConstMetric(descEject, prometheus.CounterValue, float64(e.Ejections), l...)
		ch <- prometheus.MustNewConstMetric(descProbes, prometheus.CounterValue, float64(e.ProbesOK), append(l, "ok")...)
		ch <- prometheus.MustNewConstMetric(descProbes, prometheus.CounterValue, float64(e.ProbesFailed), append(l, "failed")...)
	}
	for _, s := range states {
		ch <- prometheus.MustNewConstMetric(descExits, prometheus.GaugeValue, float64(counts[s]), s)
	}
}

// LoginCounters count the customer store's login throttling: lockouts that
// start (a client's failed logins filled a bucket) and logins refused
// unchecked while one lasts. Its methods are auth.Config's OnLockout and
// OnThrottled.
type LoginCounters struct {
	lockouts  *prometheus.CounterVec
	throttled prometheus.Counter
}

// NewLoginCounters registers the counters on reg.
func NewLoginCounters(reg prometheus.Registerer) *LoginCounters {
	l := &LoginCounters{
		lockouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "farmgate_login_lockouts_total",
			Help: "Lockouts started: a client address's failed logins filled a bucket, by scope (client_user: one user name; client: any).",
		}, []string{"scope"}),
		throttled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "farmgate_login_throttled_total",
			Help: "Logins refused without checking the password because their client is locked out (429 rate_limited).",
		}),
	}
	for _, scope := range []string{"client_user", "client"} {
		l.lockouts.WithLabelValues(scope)
	}
	reg.MustRegister(l.lockouts, l.throttled)
	return l
}

// Lockout counts a lockout of scope.
func (l *LoginCounters) Lockout(scope string) { l.lockouts.WithLabelValues(scope).Inc() }

// Throttled counts a login refused unchecked.
func (l *LoginCounters) Throttled() { l.throttled.Inc() }
