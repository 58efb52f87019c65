package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/gateway/admin"
	"github.com/farmgate/farmgate/pool"
)

// The dashboard off loopback, in headless Chromium: the admin listener is
// bound to a non-loopback address of this machine and every request it
// gets comes from one. Without credentials the browser lands on the login
// form; a wrong token is refused; /dashboard?token=… sets the cookie and
// sends the browser on to the dashboard with the token gone from the
// address bar; the page's own fetches then carry the cookie, and its
// customers view shows the customers' live tunnels, requests and errors.
//
// With FARMGATE_UPDATE_SCREENSHOT=1 it rewrites docs/dashboard.png; the
// screenshot is always kept in the test's artifact directory.
func TestDashboardOffLoopbackWithTheToken(t *testing.T) {
	t.Parallel()
	browser, driver := needChromium(t)
	ip := offLoopbackIP(t)
	const token = "dashboard-admin-token"

	specs := demo.DefaultExits(6)
	cities := map[string]string{"eu-1": "Frankfurt", "eu-2": "Paris", "us-1": "New York", "us-2": "Ashburn", "eu-5": "Berlin", "eu-6": "Marseille"}
	for i := range specs {
		specs[i].City = cities[specs[i].ID]
	}
	customers := demo.DemoCustomers + "  - {user: acme, password: demo, pools: [resi, dc]}\n  - {user: globex, password: demo, pools: [resi]}\n"
	f := startFarm(t, func(c *demo.Config) {
		c.Exits = specs
		c.Customers = customers
		c.Gateway.MetricsCustomers = 10
		pcfg := pool.DefaultConfig()
		pcfg.LocalDC = "eu"
		pcfg.ProbeInterval = 200 * time.Millisecond
		pcfg.ProbeTimeout = 500 * time.Millisecond
		c.Pool = &pcfg
	})
	var mu sync.Mutex
	var clients []string // every client address the admin listener saw
	h := admin.Handler(admin.Config{
		Pool: f.Pool, Gatherer: f.Metrics, Token: token,
		Activity:  f.Gateway.Activity,
		Customers: func(ctx context.Context) ([]auth.CustomerRecord, error) { return f.Customers.List(ctx) },
		Usage:     func(ctx context.Context, user string) (any, error) { return f.Meter.Usage(ctx, user) },
	})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		clients = append(clients, r.RemoteAddr)
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	base := srv.URL

	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	var trafficWG sync.WaitGroup
	t.Cleanup(func() { stopTraffic(); trafficWG.Wait() })
	trafficWG.Add(1)
	go func() { defer trafficWG.Done(); customerTraffic(trafficCtx, f) }()
	for _, user := range []string{"demo", "demo", "demo-zone-resi-country-fr", "acme", "acme-zone-dc", "globex"} {
		holdTunnel(t, f, user)
	}
	// acme asks for a zone it has, and one it has not; globex once too.
	for range 3 {
		curl(t, proxyURL(f, "acme-zone-mobile"), "http://"+f.Origin.HTTPAddr+"/ip")
	}
	curl(t, "http://globex:demo@"+f.GatewayAddr, "http://"+f.Origin.HTTPAddr+"/bytes?n=300000")
	curl(t, "http://globex-country-jp:demo@"+f.GatewayAddr, "http://"+f.Origin.HTTPAddr+"/ip")
	if err := f.StopExit("us-1"); err != nil {
		t.Fatal(err)
	}

	wd := startWebDriver(t, driver, browser)
	wd.setViewport(1280, 940)
	location := func() string {
		var loc string
		json.Unmarshal(wd.exec("return location.pathname + location.search"), &loc)
		return loc
	}

	// No credentials: the login form, and the API stays shut.
	wd.navigate(base + "/")
	if loc := location(); loc != "/dashboard" {
		t.Fatalf("without credentials the browser is at %q, want the login form at /dashboard", loc)
	}
	var fetched int
	json.Unmarshal(wd.exec(`const x = new XMLHttpRequest(); x.open("GET", "/api/exits", false); x.send(); return x.status;`), &fetched)
	if fetched != 401 {
		t.Errorf("the page's fetch of /api/exits before login: %d, want 401", fetched)
	}
	// A wrong token: refused, no cookie.
	wd.exec(`document.getElementById("token").value = "not-the-token"; document.getElementById("login").submit(); return null;`)
	waitFor(t, 10*time.Second, "the form to refuse a wrong token", func() error {
		var msg string
		json.Unmarshal(wd.exec(`const m = document.querySelector("p.msg"); return m ? m.textContent : "";`), &msg)
		if !strings.Contains(msg, "not this farm") {
			return fmt.Errorf("message %q at %s", msg, location())
		}
		return nil
	})
	// The token once in the URL: on to the dashboard, the token gone.
	wd.navigate(base + "/dashboard?token=" + token)
	if loc := location(); loc != "/" {
		t.Fatalf("after /dashboard?token= the browser is at %q, want / with no token", loc)
	}
	var cookieVisible bool
	json.Unmarshal(wd.exec(`return document.cookie.includes("farmgate_admin");`), &cookieVisible)
	if cookieVisible {
		t.Error("the login cookie is readable from JavaScript; want HttpOnly")
	}

	waitFor(t, 20*time.Second, "the dashboard live, with the customers view", func() error {
		v := wd.exec(`
			const cell = (sel, col) => { const r = document.querySelector(sel); return r ? r.querySelector('[data-col="' + col + '"]').textContent.trim() : null; };
			return {
				polls: Number(document.body.dataset.polls),
				status: document.getElementById("status").className,
				exits: document.querySelectorAll("#dcs tr[data-exit-id]").length,
				us1: (document.querySelector('#dcs tr[data-exit-id="us-1"]') || {dataset: {}}).dataset.state || "",
				customers: [...document.querySelectorAll("#customers tr[data-customer]")].map(r => r.dataset.customer),
				demoLive: cell('#customers tr[data-customer="demo"]', "live"),
				acmeLive: cell('#customers tr[data-customer="acme"]', "live"),
				acmeReasons: cell('#customers tr[data-customer="acme"]', "reasons"),
				globexUsage: cell('#customers tr[data-customer="globex"]', "usage"),
			};`)
		var got struct {
			Polls              int
			Status             string
			Exits              int
			US1                string
			Customers          []string
			DemoLive, AcmeLive *string
			AcmeReasons        *string
			GlobexUsage        *string
		}
		if err := json.Unmarshal(v, &got); err != nil {
			return err
		}
		switch {
		case got.Status != "status ok":
			return fmt.Errorf("status %q (the page's fetches refused?)", got.Status)
		case got.Polls < 4:
			return fmt.Errorf("%d polls so far", got.Polls)
		case got.Exits != 6 || got.US1 != pool.StateDown:
			return fmt.Errorf("%d exits, us-1 %q", got.Exits, got.US1)
		case got.DemoLive == nil || *got.DemoLive != "3":
			return fmt.Errorf("customers view %v: demo live tunnels %v, want 3", got.Customers, deref(got.DemoLive))
		case got.AcmeLive == nil || *got.AcmeLive != "2":
			return fmt.Errorf("acme live tunnels %v, want 2", deref(got.AcmeLive))
		case got.AcmeReasons == nil || !strings.Contains(*got.AcmeReasons, "pool_forbidden 3"):
			return fmt.Errorf("acme's errors %q, want pool_forbidden 3", deref(got.AcmeReasons))
		case got.GlobexUsage == nil || *got.GlobexUsage == "–":
			return fmt.Errorf("globex's billed usage %v", deref(got.GlobexUsage))
		}
		return nil
	})
	png := wd.screenshot()
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "dashboard.png"), png, 0o644); err != nil {
		t.Error(err)
	}
	if os.Getenv("FARMGATE_UPDATE_SCREENSHOT") == "1" {
		if err := os.WriteFile(filepath.Join("..", "docs", "dashboard.png"), png, 0o644); err != nil {
			t.Error(err)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(clients) < 10 {
		t.Errorf("the admin listener saw only %d requests", len(clients))
	}
	for _, c := range clients {
		if ap, err := netip.ParseAddrPort(c); err != nil || ap.Addr().Unmap().IsLoopback() {
			t.Fatalf("the admin listener saw a client at %s: this test must run off loopback", c)
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}
