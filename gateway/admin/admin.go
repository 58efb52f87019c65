// Package admin is the operator's HTTP surface of a gateway: the state of the
// farm as JSON, Prometheus metrics, health checks for load balancers, the
// dashboard, and the actions an operator takes (drain an exit). It serves on
// its own listener, never on the customer one.
package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/internal/adminhttp"
	"github.com/farmgate/farmgate/pool"
)

// Config wires the admin API to the gateway's parts. Only Pool is required.
type Config struct {
	// Pool is the gateway's exit pool.
	Pool *pool.Pool
	// Gatherer serves /metrics. Default nil: no /metrics.
	Gatherer prometheus.Gatherer
	// Token, when set, is required as "Authorization: Bearer TOKEN" (or
	// the cookie /dashboard sets on the token) from clients that are not
	// on loopback. Default "": only loopback clients are served, everyone
	// else gets 401.
	Token string
	// Drain drains (or undrains) an exit. Default nil: Pool.Drain, on this
	// gateway only; the cluster sets one that spreads over gossip.
	Drain func(id string, draining bool) error
	// Usage returns a customer's usage as a JSON-encodable value, or an
	// error wrapping ErrNotFound. Default nil: /api/customers/{user}/usage
	// answers 404.
	Usage func(ctx context.Context, user string) (any, error)
	// Customers lists the customer records; /api/customers serves them
	// without their passwords or password hashes. It is called on every
	// request, so it reads the store in use now (a reload replaces it).
	// Default nil: 404.
	Customers func(ctx context.Context) ([]auth.CustomerRecord, error)
	// Activity reports what customers did through this gateway, for
	// /api/activity. Default nil: 404.
	Activity func() gateway.Activity
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
//	GET  /api/activity[?limit=N]         customers' live tunnels, requests, errors, bytes and usage (top N, default 100), and the last minute
//	GET  /api/cluster                    gossip members
//	GET  /                               the dashboard
//	GET  /dashboard[?token=T], POST      the dashboard's login: sets a cookie that stands for the token
func Handler(cfg Config) http.Handler {
	p := cfg.Pool
	drainFn := cfg.Drain
	if drainFn == nil {
		drainFn = p.Drain
	}
	mux := http.NewServeMux()
	adminhttp.Probes(mux, func() error {
		err := servable(p)
		if err == nil && cfg.Ready != nil {
			err = cfg.Ready()
		}
		return err
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
	mux.HandleFunc("GET /api/activity", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Activity == nil {
			writeError(w, http.StatusNotFound, "no activity on this node")
			return
		}
		limit := 100
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				writeError(w, http.StatusBadRequest, "limit: want 1..10000, got "+strconv.Quote(v))
				return
			}
			limit = n
		}
		writeJSON(w, http.StatusOK, activity(r.Context(), cfg, limit))
	})
	mux.HandleFunc("GET /api/cluster", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Members == nil {
			writeJSON(w, http.StatusOK, []any{})
			return
		}
		writeJSON(w, http.StatusOK, cfg.Members())
	})
	mux.Handle("GET /{$}", dashboard())
	mux.Handle(adminhttp.LoginPath, adminhttp.Login(cfg.Token))
	return adminhttp.Guard(cfg.Token, mux)
}

// customerActivity is a row of /api/activity: the gateway's counts and the
// customer's usage as the meter has it (every gateway's, with Redis).
type customerActivity struct {
	gateway.CustomerActivity
	Usage any `json:"usage,omitempty"`
}

// activity answers /api/activity: the limit customers with the most
// traffic, each with its usage when there is a meter. Usage is best-effort:
// a slow store leaves it out rather than hold the page.
func activity(ctx context.Context, cfg Config, limit int) any {
	a := cfg.Activity()
	rows := make([]customerActivity, 0, min(limit, len(a.Customers)))
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, c := range a.Customers[:min(limit, len(a.Customers))] {
		row := customerActivity{CustomerActivity: c}
		if cfg.Usage != nil && ctx.Err() == nil {
			if u, err := cfg.Usage(ctx, c.User); err == nil {
				row.Usage = u
			}
		}
		rows = append(rows, row)
	}
	return map[string]any{"customers": rows, "total_customers": len(a.Customers), "last_minute": a.LastMinute}
}

func writeJSON(w http.ResponseWriter, status int, v any) { adminhttp.WriteJSON(w, status, v) }

func writeError(w http.ResponseWriter, status int, msg string) { adminhttp.WriteError(w, status, msg) }

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
