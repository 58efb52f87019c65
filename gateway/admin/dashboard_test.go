package admin_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/gateway/admin"
	"github.com/farmgate/farmgate/pool"
)

// The dashboard is one self-contained page: served as HTML at /, never
// cached, loading nothing from elsewhere (operators' networks are often
// offline), and polling the admin API it is served with. The browser test
// (e2e/dashboard_test.go) checks what it renders.
func TestDashboardPage(t *testing.T) {
	t.Parallel()
	p, err := pool.New(pool.DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.Handler(admin.Config{Pool: p}))
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	page := string(b)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /: %s", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want text/html", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//|@import|url\(\s*["']?(https?:)?//`)
	if m := external.FindString(page); m != "" {
		t.Errorf("page loads an external resource: %q", m)
	}
	for _, want := range []string{`"api/exits"`, `"metrics"`, `"api/cluster"`, `"/" + action`, "data-exit-id", "data-state"} {
		if !strings.Contains(page, want) {
			t.Errorf("page does not contain %s", want)
		}
	}
	// Only / is the page; other unknown paths are not.
	resp, err = http.Get(srv.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("GET /nope: %s, want 404", resp.Status)
	}
}
