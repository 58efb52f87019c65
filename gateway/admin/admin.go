// Package admin is the operator's HTTP surface of a gateway: the state of the
// farm as JSON and the actions an operator takes on it. It serves on its own
// listener, never on the customer one.
package admin

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/farmgate/farmgate/pool"
)

// Handler returns the admin API over p:
//
//	GET  /healthz                   200 "ok"
//	GET  /api/exits                 every exit with its state and load
//	POST /api/exits/{id}/drain      stop sending new tunnels to the exit
//	POST /api/exits/{id}/undrain    take it back into rotation
func Handler(p *pool.Pool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
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
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown exit " + id})
	})
	drain := func(on bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			id := r.PathValue("id")
			if err := p.Drain(id, on); err != nil {
				status := http.StatusInternalServerError
				if errors.Is(err, pool.ErrUnknownExit) {
					status = http.StatusNotFound
				}
				writeJSON(w, status, map[string]string{"error": err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"id": id, "draining": on})
		}
	}
	mux.HandleFunc("POST /api/exits/{id}/drain", drain(true))
	mux.HandleFunc("POST /api/exits/{id}/undrain", drain(false))
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
