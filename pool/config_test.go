package pool_test

import (
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/pool"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*pool.Config)
		field  string // "" = valid
	}{
		{name: "defaults are valid", mutate: func(*pool.Config) {}},
		{name: "every policy is known", mutate: func(c *pool.Config) {
			c.Policies = map[string]string{"a": "round_robin", "b": "weighted", "c": "least_conn", "d": "least_latency", "e": "random"}
		}},
		{name: "unknown default policy", mutate: func(c *pool.Config) { c.DefaultPolicy = "fastest" }, field: "DefaultPolicy"},
		{name: "empty default policy", mutate: func(c *pool.Config) { c.DefaultPolicy = "" }, field: "DefaultPolicy"},
		{name: "unknown pool policy", mutate: func(c *pool.Config) { c.Policies = map[string]string{"resi": "rr"} }, field: `Policies["resi"]`},
		{name: "zero probe interval", mutate: func(c *pool.Config) { c.ProbeInterval = 0 }, field: "ProbeInterval"},
		{name: "negative probe timeout", mutate: func(c *pool.Config) { c.ProbeTimeout = -time.Second }, field: "ProbeTimeout"},
		{name: "zero probe concurrency", mutate: func(c *pool.Config) { c.ProbeConcurrency = 0 }, field: "ProbeConcurrency"},
		{name: "zero fall", mutate: func(c *pool.Config) { c.Fall = 0 }, field: "Fall"},
		{name: "zero rise", mutate: func(c *pool.Config) { c.Rise = 0 }, field: "Rise"},
		{name: "jitter of one", mutate: func(c *pool.Config) { c.ProbeJitter = 1 }, field: "ProbeJitter"},
		{name: "zero consecutive failures", mutate: func(c *pool.Config) { c.ConsecutiveFailures = 0 }, field: "ConsecutiveFailures"},
		{name: "zero base ejection", mutate: func(c *pool.Config) { c.BaseEjection = 0 }, field: "BaseEjection"},
		{name: "max below base ejection", mutate: func(c *pool.Config) { c.MaxEjection = time.Second }, field: "MaxEjection"},
		{name: "ejected percent above 100", mutate: func(c *pool.Config) { c.MaxEjectedPercent = 101 }, field: "MaxEjectedPercent"},
		{name: "negative panic threshold", mutate: func(c *pool.Config) { c.PanicThreshold = -1 }, field: "PanicThreshold"},
		{name: "zero latency alpha", mutate: func(c *pool.Config) { c.LatencyAlpha = 0 }, field: "LatencyAlpha"},
		{name: "zero session ttl", mutate: func(c *pool.Config) { c.SessionTTL = 0 }, field: "SessionTTL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := pool.DefaultConfig()
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.field != "" && err == nil:
				t.Fatalf("Validate accepted a bad %s", tc.field)
			case tc.field != "" && !strings.Contains(err.Error(), tc.field+" "):
				t.Fatalf("Validate = %q, want it to name %s", err, tc.field)
			}
			if _, err := pool.New(c, nil); (err == nil) != (tc.field == "") {
				t.Errorf("New error = %v, want error %v", err, tc.field != "")
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	c := pool.DefaultConfig()
	want := pool.Config{
		DefaultPolicy: "least_conn", ProbeInterval: 2 * time.Second, ProbeJitter: 0.1,
		ProbeTimeout: time.Second, ProbeConcurrency: 16, Fall: 3, Rise: 2,
		ConsecutiveFailures: 5, BaseEjection: 30 * time.Second, MaxEjection: 5 * time.Minute,
		MaxEjectedPercent: 50, PanicThreshold: 50, LatencyAlpha: 0.3, SessionTTL: 10 * time.Minute,
	}
	if c.DefaultPolicy != want.DefaultPolicy || c.ProbeInterval != want.ProbeInterval || c.ProbeJitter != want.ProbeJitter ||
		c.ProbeTimeout != want.ProbeTimeout || c.ProbeConcurrency != want.ProbeConcurrency || c.Fall != want.Fall ||
		c.Rise != want.Rise || c.ConsecutiveFailures != want.ConsecutiveFailures || c.BaseEjection != want.BaseEjection ||
		c.MaxEjection != want.MaxEjection || c.MaxEjectedPercent != want.MaxEjectedPercent ||
		c.PanicThreshold != want.PanicThreshold || c.LatencyAlpha != want.LatencyAlpha || c.SessionTTL != want.SessionTTL {
		t.Errorf("DefaultConfig() = %+v, want %+v", c, want)
	}
}
