package exitnode_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/exitnode"
)

func TestHealthEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*exitnode.Config)
		status int
		reason string
	}{
		{name: "can serve", status: http.StatusOK},
		{name: "no egress IPs: the OS picks", mutate: func(c *exitnode.Config) { c.Egress = nil }, status: http.StatusOK},
		{
			// 192.0.2.0/24 is for documentation: no machine has it.
			name:   "an egress IP is gone from the machine",
			mutate: func(c *exitnode.Config) { c.Egress = append(c.Egress, netip.MustParseAddr("192.0.2.7")) },
			status: http.StatusServiceUnavailable, reason: exitnode.ReasonEgressUnavailable,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			cfg.MaxTunnels = 7
			if tc.mutate != nil {
				tc.mutate(&cfg)
			}
			_, exit := startExit(t, cfg)
			req, _ := http.NewRequest(http.MethodGet, "http://"+exit+exitnode.HealthPath, nil)
			req.Header = authHeader()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || resp.Header.Get(exitnode.HeaderError) != tc.reason {
				t.Fatalf("status %d %q (%s), want %d %q", resp.StatusCode, resp.Header.Get(exitnode.HeaderError), body, tc.status, tc.reason)
			}
			if tc.status != http.StatusOK {
				if !strings.Contains(string(body), "192.0.2.7") {
					t.Errorf("body %q does not name the egress IP", body)
				}
				return
			}
			var h exitnode.Health
			if err := json.Unmarshal(body, &h); err != nil || h.MaxTunnels != 7 || h.Tunnels != 0 {
				t.Errorf("health %s = %+v, %v; want 0 of 7 tunnels", body, h, err)
			}
		})
	}
}

// An exit that shuts down says so to health checks that still reach it
// (its listeners close, but a connection may be in flight).
func TestHealthWhileShuttingDown(t *testing.T) {
	t.Parallel()
	s, err := exitnode.New(testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, exitnode.HealthPath, nil)
		req.Header = authHeader()
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec
	}
	if rec := check(); rec.Code != http.StatusOK {
		t.Fatalf("before Shutdown: %d %s", rec.Code, rec.Body)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec := check()
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get(exitnode.HeaderError) != exitnode.ReasonExitBusy {
		t.Fatalf("after Shutdown: %d %q, want 503 exit_busy", rec.Code, rec.Header().Get(exitnode.HeaderError))
	}
}
