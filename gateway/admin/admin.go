// Package admin is the operator's HTTP surface of a gateway: the state of the
// farm as JSON, Prometheus metrics, health checks for load balancers, the
// dashboard, and the actions an operator takes (drain an exit). It serves on
// its own listener, never on the customer one.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/pool"
)

// Config wires the admin API to the gateway's parts. Only Pool is required.
type Config struct {
	// Pool is the gateway's exit pool.
	Pool *pool.Pool
	// Gatherer serves /metrics. Default nil: no /metrics.
	Gatherer prometheus.Gatherer
	// Token, when set, is required as "Authorization: Bearer TOKEN" from
	// clients that are not on loopback. Default "": only loopback clients
	// are served, everyone else gets 401.
	Token string
	// Drain drains (or undrains) an exit. Default nil: Pool.Drain, on this
	// gateway only; the cluster sets one that spreads over gossip.
	Drain func(id string, draining bool) error
	// Usage returns a customer's usage as a JSON-encodable value, or an
	// error wrapping ErrNotFound. Default nil: /api/customers/{user}/usage
	// answers 404.
	Usage func(ctx context.Context, user string) (any, error)
	// Customers lists the customer records; /api/customers serves them
	// without their passwords or password hashes. Default nil: 404.
	Customers func(ctx context.Context) ([]auth.CustomerRecord, error)
	// Members lists the cluster's members. Default nil: /api/cluster
	// answers an empty list.
	Members func() any
	// Ready adds the gateway's own conditions to /readyz (the customer
	// store loaded, not draining): a non-nil error says why it should get
	// no traffic. Default nil: none. /readyz also requires a healthy exit.
	Ready func() error
}

// ErrNotFound marks an unknown customer or exit.
var ErrNotFound = errors.New("not found")

// Handler returns the admin API:
//
//	GET  /healthz                        200 while the process serves
//	GET  /readyz                         200 when customers can be served, else 503 and why
//	GET  /metrics                        Prometheus text format
//	GET  /api/exits                      every exit with its state and load
//	GET  /api/exits/{id}                 one exit
//	POST /api/exits/{id}/drain           stop sending new tunnels to the exit
//	POST /api/exits/{id}/undrain         take it back into rotation
//	GET  /api/customers                  customers
//	GET  /api/customers/{user}/usage     a customer's usage
//	GET  /api/cluster                    gossip members
//	GET  /                               the dashboard
func Handler(cfg Config) http.Handler {
	p := cfg.Pool
	drainFn := cfg.Drain
	if drainFn == nil {
		drainFn = p.Drain
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		err := servable(p)
		if err == nil && cfg.Ready != nil {
			err = cfg.Ready()
		}
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /api/exits", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, p.Exits())
	})
	mux.HandleFunc("GET /api/exits/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		for _, e := range p.Exits() {
			if e.ID == id {
				writeJSON(w, http.StatusOK, e)
				return
			}
		}
		writeError(w, http.StatusNotFound, "unknown exit "+id)
	})
	drain := func(on bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if err := drainFn(id, on); err != nil {
				status := http.StatusInternalServerError
				if errors.Is(err, pool.ErrUnknownExit) || errors.Is(err, ErrNotFound) {
					status = http.StatusNotFound
				}
				writeError(w, status, err.Error())
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"id": id, "draining": on})
		}
	}
	mux.HandleFunc("POST /api/exits/{id}/drain", drain(true))
	mux.HandleFunc("POST /api/exits/{id}/undrain", drain(false))
	mux.HandleFunc("GET /api/customers", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Customers == nil {
			writeError(w, http.StatusNotFound, "no customer store")
			return
		}
		recs, err := cfg.Customers(r.Context())
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, withoutSecrets(recs))
	})
	mux.HandleFunc("GET /api/customers/{user}/usage", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Usage == nil {
			writeError(w, http.StatusNotFound, "no usage accounting")
			return
		}
		v, err := cfg.Usage(r.Context(), r.PathValue("user"))
		switch {
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, err.Error())
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
		default:
			writeJSON(w, http.StatusOK, v)
		}
	})
	mux.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Members == nil {
			writeJSON(w, http.StatusOK, []any{})
			return
		}
		writeJSON(w, http.StatusOK, cfg.Members())
	})
	mux.Handle("GET /{$}", dashboard())
	return guard(cfg.Token, mux)
}

// guard requires the bearer token from clients not on loopback, except for
// the health probes.
func guard(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Load balancers and Kubernetes probe from outside and carry no
		// token; the probes reveal nothing.
		if fromLoopback(r) || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		got := []byte(r.Header.Get("Authorization"))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="farmgate-admin"`)
			writeError(w, http.StatusUnauthorized, "admin API: bearer token required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(strings.TrimPrefix(host, "::ffff:"))
	return err == nil && ip.Unmap().IsLoopback()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// withoutSecrets copies customer records with their passwords and password
// hashes blanked: an argon2 hash is offline-crackable, and the admin API is
// read by dashboards and scripts that have no use for it.
func withoutSecrets(recs []auth.CustomerRecord) []auth.CustomerRecord {
	out := make([]auth.CustomerRecord, len(recs))
	for i, r := range recs {
		r.Password, r.PasswordHash = "", ""
		out[i] = r
	}
	return out
}

// servable reports why no customer could be served through p: no exit at
// all, or none healthy (each counted by state, so the operator sees whether
// they are down, ejected or drained).
func servable(p *pool.Pool) error {
	exits := p.Exits()
	if len(exits) == 0 {
		return errors.New("no exit known")
	}
	states := map[string]int{}
	for _, e := range exits {
		if e.State == pool.StateHealthy {
			return nil
		}
		states[e.State]++
	}
	var parts []string
	for _, st := range []string{pool.StateDown, pool.StateEjected, pool.StateDraining} {
		if n := states[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	return fmt.Errorf("no healthy exit (%s)", strings.Join(parts, ", "))
}
