package gateway

import (
	"net/http"
	"net/textproto"
	"strings"
)

// hopHeaders are hop-by-hop (RFC 9110 §7.6.1) or proxy-only and never cross
// the gateway. Proxy-Authorization is removed by goproxy before forwarding
// and replaced with the exit's credentials.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// cleanRequest removes what the origin must not see: hop-by-hop headers,
// headers the customer's Connection header nominates, and any X-Farmgate-*.
// The customer's other headers pass untouched.
func cleanRequest(h http.Header) {
	removeHop(h)
	for k := range h {
		if isFarmgate(k) {
			delete(h, k)
		}
	}
}

// cleanResponse removes hop-by-hop headers from an exit's response and any
// X-Farmgate-* the exit used to talk to us.
func cleanResponse(h http.Header) {
	removeHop(h)
	for k := range h {
		if isFarmgate(k) {
			delete(h, k)
		}
	}
}

func removeHop(h http.Header) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

func isFarmgate(k string) bool {
	return len(k) >= 11 && strings.EqualFold(k[:11], "X-Farmgate-")
}
