package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/gateway/admin"
)

// syncBuffer is a bytes.Buffer safe for the gateway's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value finds the series of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetricsAndAccessLogAfterKnownTraffic(t *testing.T) {
	t.Parallel()
	var accessLog syncBuffer
	f := startFarm(t, func(c *demo.Config) {
		c.Gateway.AccessLog = slog.New(slog.NewJSONHandler(&accessLog, nil))
		c.Gateway.CheckInterval = 50 * time.Millisecond
	})
	srv := httptest.NewServer(admin.Handler(admin.Config{Pool: f.Pool, Gatherer: f.Metrics}))
	t.Cleanup(srv.Close)

	// Known traffic: 3 tunnels and 2 requests through us-1 (country us),
	// one 403, one 407.
	for range 3 {
		if r := curl(t, proxyURL(f, "demo-country-us"), "https://"+f.Origin.TLSAddr+"/bytes?n=10000"); r.status != 200 {
			t.Fatalf("tunnel: %d", r.status)
		}
	}
	for range 2 {
		if r := curl(t, proxyURL(f, "demo-country-us"), "http://"+f.Origin.HTTPAddr+"/bytes?n=5000"); r.status != 200 {
			t.Fatalf("request: %d", r.status)
		}
	}
	curl(t, proxyURL(f, "demo-zone-mobile"), "http://"+f.Origin.HTTPAddr+"/ip")
	curl(t, "http://demo:wrong@"+f.GatewayAddr, "http://"+f.Origin.HTTPAddr+"/ip")

	// Tunnels are settled when they close; give the last one a moment.
	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(5 * time.Second)
	for {
		fams = scrape(t, srv.URL+"/metrics")
		if v, _ := value(fams, "farmgate_tunnels_active", map[string]string{"exit": "us-1"}); v == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	checks := []struct {
		name   string
		labels map[string]string
		want   func(float64) bool
		desc   string
	}{
		{"farmgate_tunnels_opened_total", map[string]string{"kind": "connect", "pool": "resi", "dc": "us", "exit": "us-1"}, eq(3), "3"},
		{"farmgate_tunnels_opened_total", map[string]string{"kind": "http", "pool": "resi", "exit": "us-1"}, eq(2), "2"},
		{"farmgate_tunnels_active", map[string]string{"pool": "resi", "exit": "us-1"}, eq(0), "0"},
		{"farmgate_tunnel_setup_seconds", map[string]string{"pool": "resi"}, eq(5), "5 samples"},
		{"farmgate_tunnels_failed_total", map[string]string{"reason": "pool_forbidden"}, eq(1), "1"},
		{"farmgate_tunnels_failed_total", map[string]string{"reason": "auth_required"}, eq(1), "1"},
		{"farmgate_auth_failures_total", map[string]string{"reason": "auth_required"}, eq(1), "1"},
		// 2 × 5000 bytes of body plus 3 tunnels of TLS carrying 10000 each.
		{"farmgate_bytes_total", map[string]string{"direction": "down", "pool": "resi", "exit": "us-1"}, atLeast(2*5000 + 3*10000), "≥ 40000"},
		{"farmgate_bytes_total", map[string]string{"direction": "up", "pool": "resi", "exit": "us-1"}, atLeast(3 * 100), "≥ 300"},
		{"farmgate_exit_state", map[string]string{"exit": "us-1", "state": "healthy"}, eq(1), "1"},
		{"farmgate_exit_probes_total", map[string]string{"exit": "us-1", "result": "ok"}, atLeast(0), "present"},
		{"farmgate_exits", map[string]string{"state": "healthy"}, eq(4), "4"},
	}
	for _, c := range checks {
		v, ok := value(fams, c.name, c.labels)
		if !ok || !c.want(v) {
			t.Errorf("%s%v = %v (found %v), want %s", c.name, c.labels, v, ok, c.desc)
		}
	}
	for name := range fams {
		if strings.Contains(name, "session") {
			t.Errorf("series %s: session ids must not be labels", name)
		}
	}

	// The access log: one JSON line per tunnel, request or refusal, no secret.
	lines := strings.Split(strings.TrimSpace(accessLog.String()), "\n")
	if len(lines) != 7 {
		t.Fatalf("access log has %d lines, want 7:\n%s", len(lines), accessLog.String())
	}
	kinds := map[string]int{}
	for _, l := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("access line %q: %v", l, err)
		}
		kinds[ev["kind"].(string)+" "+jsonNum(ev["status"])]++
		if strings.Contains(l, "wrong") || strings.Contains(strings.ToLower(l), "password") {
			t.Errorf("access log leaks a secret: %s", l)
		}
		if ev["status"] == float64(200) && (ev["exit"] != "us-1" || ev["destination"] == "" || ev["egress_ip"] == "" || ev["targeting"] != "country-US") {
			t.Errorf("access line misses fields: %s", l)
		}
	}
	want := map[string]int{"connect 200": 3, "http 200": 2, "http 403": 1, "http 407": 1}
	for k, n := range want {
		if kinds[k] != n {
			t.Errorf("access log: %d × %q, want %d (all: %v)", kinds[k], k, n, kinds)
		}
	}
}

func eq(want float64) func(float64) bool      { return func(v float64) bool { return v == want } }
func atLeast(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// An exit that leaves the pool takes its series with it (once its last
// tunnel closed): a farm whose exits come and go does not pile up series
// of exits long gone.
func TestSeriesOfAnExitThatLeftAreDeleted(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	srv := httptest.NewServer(admin.Handler(admin.Config{Pool: f.Pool, Gatherer: f.Metrics}))
	t.Cleanup(srv.Close)
	if r := curl(t, proxyURL(f, "demo-country-us"), "http://"+f.Origin.HTTPAddr+"/bytes?n=5000"); r.status != 200 || r.header.Get("X-Farmgate-Exit") != "us-1" {
		t.Fatalf("request: %d through %q", r.status, r.header.Get("X-Farmgate-Exit"))
	}
	perExit := []string{"farmgate_tunnels_opened_total", "farmgate_tunnels_active", "farmgate_bytes_total", "farmgate_exit_state"}
	waitFor(t, 5*time.Second, "us-1's series", func() error {
		fams := scrape(t, srv.URL+"/metrics")
		for _, name := range perExit {
			if _, ok := value(fams, name, map[string]string{"exit": "us-1"}); !ok {
				return fmt.Errorf("no %s{exit=us-1}", name)
			}
		}
		return nil
	})
	f.Pool.Remove("us-1")
	fams := scrape(t, srv.URL+"/metrics")
	for _, name := range perExit {
		if _, ok := value(fams, name, map[string]string{"exit": "us-1"}); ok {
			t.Errorf("%s{exit=us-1} still served after us-1 left the pool", name)
		}
	}
	if _, ok := value(fams, "farmgate_tunnels_opened_total", map[string]string{"exit": "eu-1"}); !ok {
		if _, ok := value(fams, "farmgate_exit_state", map[string]string{"exit": "eu-1"}); !ok {
			t.Errorf("eu-1, still in the pool, lost its series too")
		}
	}
}
