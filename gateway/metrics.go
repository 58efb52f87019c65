package gateway

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/farmgate/farmgate/pool"
)

// metrics are the gateway's Prometheus series. Label sets are bounded: no
// destination hosts and no session ids, only pools, exits, DCs, the fixed
// error reasons and, when Config.MetricsCustomers asks for them, the top
// customers (the rest folded into customer="other"). Series of an exit
// that left the pool go at the next scrape once its last tunnel closed.
type metrics struct {
	opened    *prometheus.CounterVec
	active    *prometheus.GaugeVec
	failed    *prometheus.CounterVec
	setup     *prometheus.HistogramVec
	byteCount *prometheus.CounterVec
	authFails *prometheus.CounterVec

	pool     *pool.Pool
	activity *activity
	topN     int

	mu       sync.Mutex     // guards exitLive and seen
	exitLive map[string]int // tunnels open per exit label
	seen     map[string]bool

	fold customerFold
}

var _ prometheus.Collector = (*metrics)(nil)

func newMetrics(reg prometheus.Registerer, p *pool.Pool, act *activity, topN int) *metrics {
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
			Help: "Bytes on customers' connections, as billed, by the exit they went through: up (from the customer) and down (to the customer), heads included.",
		}, []string{"direction", "pool", "exit"}),
		authFails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "farmgate_auth_failures_total",
			Help: "Requests refused before picking an exit, by reason.",
		}, []string{"reason"}),
		pool: p, activity: act, topN: topN,
		exitLive: map[string]int{}, seen: map[string]bool{},
		fold: customerFold{last: map[string]foldCounts{}, emitted: map[string]*foldCounts{}},
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

var (
	descCustRequests = prometheus.NewDesc("farmgate_customer_requests_total",
		"Tunnels and requests of a customer that ended or were refused after login; only the top customers by traffic have their own series (--metrics-customers), the others are customer=\"other\".", []string{"customer"}, nil)
	descCustErrors = prometheus.NewDesc("farmgate_customer_errors_total",
		"A customer's tunnels and requests refused or failed, by X-Farmgate-Error reason; customers folded as in farmgate_customer_requests_total.", []string{"customer", "reason"}, nil)
	descCustBytes = prometheus.NewDesc("farmgate_customer_bytes_total",
		"A customer's billed bytes, up and down; customers folded as in farmgate_customer_requests_total.", []string{"customer", "direction"}, nil)
)

func (m *metrics) vecs() []prometheus.Collector {
	return []prometheus.Collector{m.opened, m.active, m.failed, m.setup, m.byteCount, m.authFails}
}

// Describe sends the descriptors of every series.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.vecs() {
		c.Describe(ch)
	}
	if m.topN > 0 {
		ch <- descCustRequests
		ch <- descCustErrors
		ch <- descCustBytes
	}
}

// Collect drops the series of exits gone from the pool, then sends the
// rest, and the customers' series when asked for.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.prune()
	for _, c := range m.vecs() {
		c.Collect(ch)
	}
	if m.topN > 0 {
		m.fold.collect(ch, m.activity.snapshot(), m.topN)
	}
}

// prune deletes the per-exit series of exits no longer in the pool whose
// last tunnel closed.
func (m *metrics) prune() {
	if m.pool == nil {
		return
	}
	known := map[string]bool{}
	for _, e := range m.pool.Exits() {
		known[e.ID] = true
	}
	m.mu.Lock()
	var gone []string
	for id := range m.seen {
		if !known[id] && m.exitLive[id] == 0 {
			gone = append(gone, id)
			delete(m.seen, id)
			delete(m.exitLive, id)
		}
	}
	m.mu.Unlock()
	for _, id := range gone {
		l := prometheus.Labels{"exit": id}
		m.opened.DeletePartialMatch(l)
		m.active.DeletePartialMatch(l)
		m.byteCount.DeletePartialMatch(l)
	}
}

func (m *metrics) tunnelOpened(kind, pool, dc, exit string, setup time.Duration) {
	m.mu.Lock()
	m.seen[exit] = true
	m.exitLive[exit]++
	m.mu.Unlock()
	m.opened.WithLabelValues(kind, pool, dc, exit).Inc()
	m.active.WithLabelValues(pool, exit).Inc()
	m.setup.WithLabelValues(pool).Observe(setup.Seconds())
}

func (m *metrics) tunnelClosed(pool, exit string) {
	m.active.WithLabelValues(pool, exit).Dec()
	m.mu.Lock()
	m.exitLive[exit]--
	m.mu.Unlock()
}

// refused counts a customer who got an error reply; pool is "" before the
// customer was admitted.
func (m *metrics) refused(r reply, pool string) {
	if refusals[r.reason].login {
		m.authFails.WithLabelValues(r.reason).Inc()
	}
	m.failed.WithLabelValues(r.reason, pool).Inc()
}

// bytes counts billed bytes of customer through exit.
func (m *metrics) bytes(pool, exit, customer string, up, down int64) {
	if up <= 0 && down <= 0 {
		return
	}
	m.mu.Lock()
	m.seen[exit] = true
	m.mu.Unlock()
	if up > 0 {
		m.byteCount.WithLabelValues("up", pool, exit).Add(float64(up))
	}
	if down > 0 {
		m.byteCount.WithLabelValues("down", pool, exit).Add(float64(down))
	}
	m.activity.bytes(customer, max(up, 0), max(down, 0))
}

// served counts a request or tunnel that ended, or was refused, for the
// per-customer series and the last minute.
func (m *metrics) served(ev *accessEvent) {
	m.activity.ended(ev.customer, ev.reason)
}

// foldCounts are one customer's (or "other"'s) counts.
type foldCounts struct {
	requests, up, down int64
	errors             map[string]int64
}

// customerFold turns the per-customer counts into series for the topN
// customers by traffic and one customer="other" for the rest. Every series
// is a true counter: what a customer does while in the top N goes to its
// own series, what it does outside goes to "other", so a customer entering
// or leaving the top N never makes a series go down, and every request and
// byte lands in exactly one series (sum(rate(...)) is the whole gateway's).
// A customer's series starts at zero when it enters the top N and is
// deleted when it leaves.
type customerFold struct {
	mu      sync.Mutex             // guards last and emitted; one scrape at a time
	last    map[string]foldCounts  // each customer's totals at the last scrape
	emitted map[string]*foldCounts // by series label
}

const otherCustomer = "other"

func (f *customerFold) collect(ch chan<- prometheus.Metric, snap []CustomerActivity, topN int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	top := map[string]bool{}
	for _, c := range snap {
		if len(top) == topN {
			break
		}
		if c.User != activityOverflow {
			top[c.User] = true
		}
	}
	if f.emitted[otherCustomer] == nil {
		f.emitted[otherCustomer] = &foldCounts{}
	}
	for _, c := range snap {
		prev := f.last[c.User]
		label := otherCustomer
		if top[c.User] {
			label = c.User
		}
		e := f.emitted[label]
		if e == nil {
			e = &foldCounts{}
			f.emitted[label] = e
		}
		e.requests += c.Requests - prev.requests
		e.up += c.BytesUp - prev.up
		e.down += c.BytesDown - prev.down
		for r, n := range c.ErrorsByReason {
			if d := n - prev.errors[r]; d > 0 {
				if e.errors == nil {
					e.errors = map[string]int64{}
				}
				e.errors[r] += d
			}
		}
		f.last[c.User] = foldCounts{requests: c.Requests, up: c.BytesUp, down: c.BytesDown, errors: c.ErrorsByReason}
	}
	for label := range f.emitted {
		if label != otherCustomer && !top[label] {
			delete(f.emitted, label)
		}
	}
	for label, e := range f.emitted {
		ch <- prometheus.MustNewConstMetric(descCustRequests, prometheus.CounterValue, float64(e.requests), label)
		ch <- prometheus.MustNewConstMetric(descCustBytes, prometheus.CounterValue, float64(e.up), label, "up")
		ch <- prometheus.MustNewConstMetric(descCustBytes, prometheus.CounterValue, float64(e.down), label, "down")
		for r, n := range e.errors {
			ch <- prometheus.MustNewConstMetric(descCustErrors, prometheus.CounterValue, float64(n), label, r)
		}
	}
}
