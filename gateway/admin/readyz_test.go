package admin_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/gateway/admin"
	"github.com/farmgate/farmgate/pool"
)

// /readyz is 200 only when a customer could be served: some exit healthy
// and the gateway's own conditions met; otherwise 503 says why.
func TestReadyzSaysWhy(t *testing.T) {
	t.Parallel()
	p, err := pool.New(pool.DefaultConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var gatewayErr error
	srv := httptest.NewServer(admin.Handler(admin.Config{Pool: p, Ready: func() error { return gatewayErr }}))
	t.Cleanup(srv.Close)
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	steps := []struct {
		name   string
		do     func()
		status int
		says   string
	}{
		{"no exit", func() {}, 503, "no exit known"},
		{"one healthy exit", func() { p.Upsert(pool.Exit{ID: "a", Pool: "resi", Addr: "x"}) }, 200, "ready"},
		{"only exit drained", func() { p.Drain("a", true) }, 503, "no healthy exit (1 draining)"},
		{"a second healthy exit", func() { p.Upsert(pool.Exit{ID: "b", Pool: "dc", Addr: "y"}) }, 200, "ready"},
		{"gateway draining", func() { gatewayErr = errors.New("draining") }, 503, "not ready: draining"},
	}
	for _, st := range steps {
		st.do()
		status, body := get()
		if status != st.status || !strings.Contains(body, st.says) {
			t.Errorf("%s: %d %q, want %d saying %q", st.name, status, body, st.status, st.says)
		}
	}
}
