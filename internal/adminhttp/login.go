package adminhttp

import (
	"crypto/subtle"
	"html/template"
	"net/http"
	"time"
)

// LoginPath is the dashboard's login page.
const LoginPath = "/dashboard"

// cookieLifetime is how long a browser keeps the login cookie.
const cookieLifetime = 12 * time.Hour

// Login serves LoginPath: GET /dashboard?token=T or a POST of the form's
// token field with the right token sets the login cookie (HttpOnly,
// SameSite=Strict) and redirects to the dashboard, so that the token leaves
// the address bar; a GET without one shows the form. Loopback clients need
// no token and are sent straight on.
func Login(token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			w.Header().Set("Allow", "GET, POST")
			WriteError(w, http.StatusMethodNotAllowed, "GET or POST")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		got := r.FormValue("token")
		switch {
		case got != "" && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1:
			http.SetCookie(w, &http.Cookie{
				Name: CookieName, Value: cookieValue(token), Path: "/",
				MaxAge: int(cookieLifetime.Seconds()), HttpOnly: true, Secure: r.TLS != nil,
				SameSite: http.SameSiteStrictMode,
			})
			http.Redirect(w, r, "/", http.StatusSeeOther)
		case got == "" && FromLoopback(r):
			http.Redirect(w, r, "/", http.StatusSeeOther)
		default:
			status, msg := http.StatusOK, ""
			if got != "" {
				status, msg = http.StatusUnauthorized, "That token is not this farm's admin token."
			} else if token == "" {
				msg = "This admin listener has no token (--admin-token-file): it serves loopback clients only."
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			loginPage.Execute(w, msg)
		}
	})
}

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>farmgate — sign in</title>
<style>
 body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:#f4f6f8;color:#1d2733;margin:0}
 header{background:#16202c;color:#fff;padding:10px 24px;font-weight:650;font-size:18px}
 form{max-width:380px;margin:60px auto;background:#fff;border:1px solid #e3e8ee;border-radius:8px;padding:20px}
 input{width:100%;padding:8px;margin:8px 0 12px;box-sizing:border-box;font-size:14px}
 button{padding:8px 16px;background:#2f6fde;color:#fff;border:0;border-radius:5px;font-size:14px}
 p.msg{color:#c62828}
</style></head>
<body><header>farmgate</header>
<form method="post" action="dashboard" id="login">
 <label for="token">Admin token (the contents of <code>--admin-token-file</code>)</label>
 <input type="password" id="token" name="token" autocomplete="current-password" autofocus>
 {{if .}}<p class="msg">{{.}}</p>{{end}}
 <button type="submit">Open the dashboard</button>
</form></body></html>
`))
