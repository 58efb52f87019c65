package gateway

import (
	"net/http"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// cleanRequest removes what the origin must not see: hop-by-hop headers,
// headers the customer's Connection header nominates, and any X-Farmgate-*.
// The customer's other headers pass untouched; their Proxy-Authorization is
// hop-by-hop, and the exit's credentials replace it.
func cleanRequest(h http.Header) { wire.RemoveHop(h) }

// cleanResponse removes hop-by-hop headers from an exit's response and any
// X-Farmgate-* the exit used to talk to us.
func cleanResponse(h http.Header) { wire.RemoveHop(h) }
