package adminhttp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// CookieName is the cookie the dashboard's login sets (see Login); Guard
// accepts it in place of the bearer token.
const CookieName = "farmgate_admin"

// Guard requires the bearer token, or the login cookie, from clients not on
// loopback, except for the health probes (/healthz, /readyz) and the login
// page (/dashboard), which anyone may load. With token "" only loopback
// clients are served. A browser asking for a page without credentials is
// sent to the login page rather than given a JSON 401.
func Guard(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	cookie := []byte(cookieValue(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Load balancers and Kubernetes probe from outside and carry no
		// token; the probes reveal nothing.
		if FromLoopback(r) || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == LoginPath {
			next.ServeHTTP(w, r)
			return
		}
		if token != "" {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) == 1 {
				next.ServeHTTP(w, r)
				return
			}
			if c, err := r.Cookie(CookieName); err == nil && subtle.ConstantTimeCompare([]byte(c.Value), cookie) == 1 {
				next.ServeHTTP(w, r)
				return
			}
		}
		if r.Method == http.MethodGet && r.URL.Path == "/" && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, LoginPath, http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="farmgate-admin"`)
		WriteError(w, http.StatusUnauthorized, "admin API: bearer token required")
	})
}

// cookieValue is what the login cookie holds: a MAC of a fixed string under
// the token, so that the cookie opens the admin API without being the token
// (it is no use as a bearer token, nor on another farm). "" for no token.
func cookieValue(token string) string {
	if token == "" {
		return ""
	}
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("farmgate admin dashboard cookie v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// FromLoopback reports whether r comes from a loopback address.
func FromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
