package adminhttp_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/internal/adminhttp"
)

// serve runs one request from remote through Guard(token) around a mux
// with the probes, the login page and one API route.
func serve(token, method, target, remote string, hdr http.Header, body string) *httptest.ResponseRecorder {
	mux := http.NewServeMux()
	adminhttp.Probes(mux, func() error { return nil })
	mux.HandleFunc("GET /api/x", func(w http.ResponseWriter, r *http.Request) { adminhttp.WriteJSON(w, 200, "secret data") })
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("dashboard")) })
	mux.Handle(adminhttp.LoginPath, adminhttp.Login(token))
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	var req *http.Request
	if rd != nil {
		req = httptest.NewRequest(method, target, rd)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.RemoteAddr = remote
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	adminhttp.Guard(token, mux).ServeHTTP(rec, req)
	return rec
}

// loginCookie logs in with the token and returns the cookie the browser
// would keep.
func loginCookie(t *testing.T, token string) *http.Cookie {
	t.Helper()
	rec := serve(token, "GET", "/dashboard?token="+url.QueryEscape(token), "192.0.2.9:5000", nil, "")
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("login set %d cookies: %v", len(cs), rec.Header())
	}
	return cs[0]
}

func TestGuard(t *testing.T) {
	t.Parallel()
	const token = "s3cret-admin"
	cookie := loginCookie(t, token)
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		token  string
		remote string
		path   string
		hdr    http.Header
		status int
	}{
		{"loopback needs nothing", token, "127.0.0.1:4000", "/api/x", nil, 200},
		{"IPv6 loopback needs nothing", token, "[::1]:4000", "/api/x", nil, 200},
		{"stranger without token", token, "192.0.2.9:4000", "/api/x", nil, 401},
		{"stranger with the bearer token", token, "192.0.2.9:4000", "/api/x", h("Authorization", "Bearer "+token), 200},
		{"stranger with a wrong token", token, "192.0.2.9:4000", "/api/x", h("Authorization", "Bearer nope"), 401},
		{"stranger with the login cookie", token, "192.0.2.9:4000", "/api/x", h("Cookie", cookie.Name+"="+cookie.Value), 200},
		{"stranger with a forged cookie", token, "192.0.2.9:4000", "/api/x", h("Cookie", cookie.Name+"=forged"), 401},
		{"cookie of another token", "other-token", "192.0.2.9:4000", "/api/x", h("Cookie", cookie.Name+"="+cookie.Value), 401},
		{"the token itself as cookie", token, "192.0.2.9:4000", "/api/x", h("Cookie", cookie.Name+"="+token), 401},
		{"no token configured: stranger refused", "", "192.0.2.9:4000", "/api/x", h("Authorization", "Bearer "), 401},
		{"probes are free", token, "192.0.2.9:4000", "/readyz", nil, 200},
		{"login page is free", token, "192.0.2.9:4000", "/dashboard", nil, 200},
		{"browser without credentials goes to login", token, "192.0.2.9:4000", "/", h("Accept", "text/html"), 303},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(tc.token, "GET", tc.path, tc.remote, tc.hdr, "")
			if rec.Code != tc.status {
				t.Fatalf("GET %s from %s: %d, want %d: %s", tc.path, tc.remote, rec.Code, tc.status, rec.Body)
			}
			if tc.status == 303 && rec.Header().Get("Location") != adminhttp.LoginPath {
				t.Errorf("redirected to %q", rec.Header().Get("Location"))
			}
		})
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	const token = "s3cret-admin"
	t.Run("token in the URL sets a strict HttpOnly cookie and leaves the URL", func(t *testing.T) {
		rec := serve(token, "GET", "/dashboard?token="+token, "192.0.2.9:5000", nil, "")
		if rec.Code != 303 || rec.Header().Get("Location") != "/" {
			t.Fatalf("%d to %q, want 303 to /", rec.Code, rec.Header().Get("Location"))
		}
		c := rec.Result().Cookies()[0]
		if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 {
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/", c)
		}
		if strings.Contains(c.Value, token) {
			t.Errorf("the cookie carries the token itself: %q", c.Value)
		}
	})
	t.Run("the form posts the token", func(t *testing.T) {
		rec := serve(token, "POST", "/dashboard", "192.0.2.9:5000", nil, "token="+token)
		if rec.Code != 303 || len(rec.Result().Cookies()) != 1 {
			t.Fatalf("%d, cookies %v", rec.Code, rec.Result().Cookies())
		}
	})
	t.Run("a wrong token gets the form again, no cookie", func(t *testing.T) {
		rec := serve(token, "POST", "/dashboard", "192.0.2.9:5000", nil, "token=wrong")
		if rec.Code != 401 || len(rec.Result().Cookies()) != 0 || !strings.Contains(rec.Body.String(), "not this farm") {
			t.Fatalf("%d, cookies %v: %s", rec.Code, rec.Result().Cookies(), rec.Body)
		}
	})
	t.Run("no token: the form says loopback only", func(t *testing.T) {
		rec := serve("", "GET", "/dashboard", "192.0.2.9:5000", nil, "")
		if !strings.Contains(rec.Body.String(), "loopback") {
			t.Fatalf("%s", rec.Body)
		}
	})
}
