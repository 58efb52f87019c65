package redisbreaker

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/farmgate/farmgate/internal/testkit/logtest"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

// scraped returns the value of the unlabelled series name in reg.
func scraped(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name || len(f.Metric) != 1 {
			continue
		}
		m := f.Metric[0]
		if m.Gauge != nil {
			return m.Gauge.GetValue()
		}
		return m.Counter.GetValue()
	}
	t.Fatalf("no series %s", name)
	return 0
}

// The collector says what the breaker does: Redis up; stopped, one opening
// and calls failed fast; back, up again.
func TestCollectorFollowsTheBreaker(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := client(t, srv.Addr())
	b := running(t, rdb, &logtest.Recorder{})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(b.Collector())
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if v := scraped(t, reg, "farmgate_redis_up"); v != 1 {
		t.Fatalf("farmgate_redis_up with Redis answering: %v", v)
	}
	srv.Stop()
	get(rdb, time.Second) // opens the breaker
	get(rdb, time.Second) // failed fast
	if v := scraped(t, reg, "farmgate_redis_up"); v != 0 {
		t.Errorf("farmgate_redis_up with Redis stopped: %v, want 0", v)
	}
	if v := scraped(t, reg, "farmgate_redis_breaker_opens_total"); v != 1 {
		t.Errorf("farmgate_redis_breaker_opens_total: %v, want 1", v)
	}
	if v := scraped(t, reg, "farmgate_redis_calls_failed_fast_total"); v < 1 {
		t.Errorf("farmgate_redis_calls_failed_fast_total: %v, want ≥ 1", v)
	}
	srv.Restart()
	eventually(t, 10*time.Second, "breaker closed after Redis restarted", func() bool { return !b.Open() })
	if v := scraped(t, reg, "farmgate_redis_up"); v != 1 {
		t.Errorf("farmgate_redis_up after Redis came back: %v, want 1", v)
	}
}
