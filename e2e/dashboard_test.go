package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/gateway/admin"
	"github.com/farmgate/farmgate/pool"
)

// TestDashboard loads the operator dashboard in headless Chromium (driven
// through chromedriver's WebDriver HTTP API) against a running demo farm: the
// page lists every exit under its DC with the state the API reports, follows
// a drain made elsewhere within a few polls, and its Drain/Undrain button
// drains the exit for real. It shows traffic per pool and errors by reason.
//
// Its screenshot is kept in the test's artifact directory (go test
// -artifacts); docs/dashboard.png comes from
// TestDashboardOffLoopbackWithTheToken.
func TestDashboard(t *testing.T) {
	t.Parallel()
	browser, driver := needChromium(t)

	specs := demo.DefaultExits(6)
	cities := map[string]string{"eu-1": "Frankfurt", "eu-2": "Paris", "us-1": "New York", "us-2": "Ashburn", "eu-5": "Berlin", "eu-6": "Marseille"}
	for i := range specs {
		specs[i].City = cities[specs[i].ID]
	}
	f := startFarm(t, func(c *demo.Config) {
		c.Exits = specs
		pcfg := pool.DefaultConfig()
		pcfg.LocalDC = "eu"
		// Fast probes: a stopped exit shows as down within a second.
		pcfg.ProbeInterval = 200 * time.Millisecond
		pcfg.ProbeTimeout = 500 * time.Millisecond
		c.Pool = &pcfg
	})
	srv := httptest.NewServer(admin.Handler(admin.Config{Pool: f.Pool, Gatherer: f.Metrics}))
	t.Cleanup(srv.Close)

	// Customers at work while the page watches: requests in both pools, a
	// few refused ones, and tunnels held open.
	trafficCtx, stopTraffic := context.WithCancel(context.Background())
	var trafficWG sync.WaitGroup
	t.Cleanup(func() { stopTraffic(); trafficWG.Wait() })
	trafficWG.Add(1)
	go func() {
		defer trafficWG.Done()
		customerTraffic(trafficCtx, f)
	}()
	for _, user := range []string{"demo", "demo", "demo-zone-resi-country-fr", "demo-zone-dc"} {
		holdTunnel(t, f, user)
	}

	// us-1 crashes: health marks it down.
	if err := f.StopExit("us-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "us-1 down in /api/exits", func() error {
		if st := apiStates(t, srv.URL)["us-1"]; st != pool.StateDown {
			return fmt.Errorf("us-1 is %q", st)
		}
		return nil
	})

	wd := startWebDriver(t, driver, browser)
	wd.setViewport(1280, 900)
	wd.navigate(srv.URL + "/")

	// Every exit, in its DC, in the state the API reports.
	waitFor(t, 15*time.Second, "the page to list every exit with its state", func() error {
		page := pageExits(wd)
		api := apiExits(t, srv.URL)
		if len(page) != len(api) {
			return fmt.Errorf("page lists %d exits %v, API %d", len(page), page, len(api))
		}
		for id, e := range api {
			got, ok := page[id]
			if !ok {
				return fmt.Errorf("exit %s missing from the page", id)
			}
			if got.State != e.State || got.DC != e.DC || got.StateText != e.State {
				return fmt.Errorf("exit %s shows state %q (text %q) in DC %q, API says %q in %q", id, got.State, got.StateText, got.DC, e.State, e.DC)
			}
		}
		return nil
	})
	if got := pageExits(wd)["us-1"]; got.State != pool.StateDown {
		t.Errorf("us-1 shows %q, want down", got.State)
	}

	// A few polls later: traffic per pool and errors by reason are there.
	waitFor(t, 15*time.Second, "traffic and errors panels", func() error {
		v := wd.exec(`
			const cell = (sel, col) => { const r = document.querySelector(sel); return r ? r.querySelector('[data-col="' + col + '"]').textContent : null; };
			return {
				polls: Number(document.body.dataset.polls),
				status: document.getElementById("status").className,
				pools: [...document.querySelectorAll("tr[data-pool]")].filter(r => r.closest("#pools")).map(r => r.dataset.pool),
				forbidden: cell('#errors tr[data-reason="pool_forbidden"]', "total"),
				active: [...document.querySelectorAll('#dcs tr[data-exit-id]')].reduce((t, r) => t + Number(r.querySelector('[data-col="active"]').textContent.trim()), 0),
			};`)
		var got struct {
			Polls     int
			Status    string
			Pools     []string
			Forbidden *string
			Active    int
		}
		if err := json.Unmarshal(v, &got); err != nil {
			return err
		}
		switch {
		case got.Polls < 3:
			return fmt.Errorf("%d polls so far", got.Polls)
		case got.Status != "status ok":
			return fmt.Errorf("status %q", got.Status)
		case strings.Join(got.Pools, ",") != "dc,resi":
			return fmt.Errorf("pools panel lists %v, want dc, resi", got.Pools)
		case got.Forbidden == nil || *got.Forbidden == "0":
			return fmt.Errorf("errors panel: pool_forbidden total %v", got.Forbidden)
		case got.Active < 4:
			return fmt.Errorf("exit rows show %d live tunnels, want at least the 4 held open", got.Active)
		}
		return nil
	})

	// Another operator drains eu-6 through the API: the page follows.
	postOK(t, srv.URL+"/api/exits/eu-6/drain")
	waitFor(t, 10*time.Second, "eu-6 to show draining", func() error {
		if e := pageExits(wd)["eu-6"]; e.State != pool.StateDraining || e.Button != "undrain" {
			return fmt.Errorf("eu-6 shows %q with button %q", e.State, e.Button)
		}
		return nil
	})
	// Let the rates settle over a couple of polls before the picture.
	time.Sleep(4500 * time.Millisecond)
	png := wd.screenshot()
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "dashboard.png"), png, 0o644); err != nil {
		t.Error(err)
	}

	// The Drain button drains eu-1 for real, and Undrain takes it back.
	for _, step := range []struct{ button, want string }{
		{"drain", pool.StateDraining},
		{"undrain", pool.StateHealthy},
	} {
		wd.click(`#dcs tr[data-exit-id="eu-1"] button[data-action="` + step.button + `"]`)
		waitFor(t, 10*time.Second, "eu-1 "+step.want+" after "+step.button, func() error {
			if st := apiStates(t, srv.URL)["eu-1"]; st != step.want {
				return fmt.Errorf("API says %q", st)
			}
			if e := pageExits(wd)["eu-1"]; e.State != step.want {
				return fmt.Errorf("page shows %q", e.State)
			}
			return nil
		})
	}
}

// needChromium returns the paths of chromium and chromedriver. It skips the
// test when they are missing, except under CI, where .ci/run installs them.
func needChromium(t *testing.T) (browser, driver string) {
	t.Helper()
	find := func(names ...string) string {
		for _, name := range names {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	browser = find("chromium", "chromium-browser", "google-chrome")
	driver = find("chromedriver")
	var missing []string
	if browser == "" {
		missing = append(missing, "chromium")
	}
	if driver == "" {
		missing = append(missing, "chromedriver")
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("dashboard test needs %s (Debian: apt-get install chromium chromium-driver)", strings.Join(missing, " and "))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return browser, driver
}

// customerTraffic sends requests through the gateway until ctx is done:
// downloads in both pools, and now and then one the gateway refuses.
func customerTraffic(ctx context.Context, f *demo.Farm) {
	clients := map[string]*http.Client{}
	client := func(user, pass string) *http.Client {
		if c, ok := clients[user+":"+pass]; ok {
			return c
		}
		u := &url.URL{Scheme: "http", User: url.UserPassword(user, pass), Host: f.GatewayAddr}
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableKeepAlives: true}}
		clients[user+":"+pass] = c
		return c
	}
	get := func(user, pass, path string) {
		method, body := "GET", io.Reader(nil)
		if path == "/echo" {
			method, body = "POST", bytes.NewReader(make([]byte, 40_000))
		}
		req, err := http.NewRequestWithContext(ctx, method, "http://"+f.Origin.HTTPAddr+path, body)
		if err != nil {
			return
		}
		resp, err := client(user, pass).Do(req)
		if err != nil {
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		get("demo", "demo", fmt.Sprintf("/bytes?n=%d", 150_000+(i%7)*40_000))
		if i%2 == 0 {
			get("demo-zone-dc", "demo", "/bytes?n=60000")
			get("demo", "demo", "/echo")
		}
		if i%5 == 0 {
			get("demo-zone-mobile", "demo", "/ip") // 403 pool_forbidden
		}
		if i%9 == 0 {
			get("demo", "wrong", "/ip") // 407
		}
		if i%13 == 0 {
			get("demo-country-jp", "demo", "/ip") // no exit in JP
		}
	}
}

// holdTunnel opens a CONNECT tunnel through the gateway to the origin and
// keeps it open until the test ends.
func holdTunnel(t *testing.T, f *demo.Farm, user string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", f.GatewayAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":demo"))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\nProxy-Authorization: Basic %s\r\n\r\n", f.Origin.HTTPAddr, auth)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("CONNECT as %s: %v", user, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("CONNECT as %s: %s (%s)", user, resp.Status, resp.Header.Get("X-Farmgate-Error"))
	}
	c.SetDeadline(time.Time{})
}

type apiExit struct {
	ID, DC, State string
}

func apiExits(t *testing.T, base string) map[string]apiExit {
	t.Helper()
	resp, err := http.Get(base + "/api/exits")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []apiExit
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	out := map[string]apiExit{}
	for _, e := range list {
		out[e.ID] = e
	}
	return out
}

func apiStates(t *testing.T, base string) map[string]string {
	out := map[string]string{}
	for id, e := range apiExits(t, base) {
		out[id] = e.State
	}
	return out
}

func postOK(t *testing.T, u string) {
	t.Helper()
	resp, err := http.Post(u, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %s", u, resp.Status)
	}
}

// pageExit is an exit row as the page renders it.
type pageExit struct {
	DC        string `json:"dc"`
	State     string `json:"state"`     // the row's data-state
	StateText string `json:"stateText"` // what the state pill says
	Button    string `json:"button"`    // the action its button offers
}

func pageExits(wd *webDriver) map[string]pageExit {
	v := wd.exec(`
		const out = {};
		for (const r of document.querySelectorAll("#dcs tr[data-exit-id]")) {
			const b = r.querySelector("button");
			out[r.dataset.exitId] = {
				dc: r.closest("[data-dc]").dataset.dc,
				state: r.dataset.state,
				stateText: r.querySelector('[data-testid="exit-state"] .pill').textContent,
				button: b.disabled ? "" : b.dataset.action,
			};
		}
		return out;`)
	out := map[string]pageExit{}
	if err := json.Unmarshal(v, &out); err != nil {
		wd.t.Fatalf("page exits: %v: %s", err, v)
	}
	return out
}

// waitFor retries check every 200 ms until it returns nil, failing the test
// with the last error once limit has passed.
func waitFor(t *testing.T, limit time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %v for %s: %v", limit, what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// webDriver is the least of a W3C WebDriver client: one session on a
// chromedriver this test started.
type webDriver struct {
	t    *testing.T
	base string // http://127.0.0.1:PORT/session/ID
	hc   *http.Client
}

// startWebDriver starts chromedriver on a free loopback port and opens a
// headless Chromium session; both stop when the test ends.
func startWebDriver(t *testing.T, driver, browser string) *webDriver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	var logs bytes.Buffer
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port), "--allowed-ips=127.0.0.1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromedriver: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	hc := &http.Client{Timeout: 30 * time.Second}
	waitFor(t, 15*time.Second, "chromedriver to be ready", func() error {
		select {
		case <-exited:
			t.Fatalf("chromedriver exited: %s", logs.String())
		default:
		}
		resp, err := hc.Get(root + "/status")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var st struct{ Value struct{ Ready bool } }
		json.NewDecoder(resp.Body).Decode(&st)
		if !st.Value.Ready {
			return fmt.Errorf("not ready")
		}
		return nil
	})

	wd := &webDriver{t: t, base: root, hc: hc}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{
			"binary": browser,
			"args": []string{
				"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
				"--disable-quic", "--no-first-run", "--disable-background-networking",
				"--disable-component-update", "--disable-sync", "--disable-extensions",
				"--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1",
				"--user-data-dir=" + t.TempDir(),
			},
		},
	}}}
	var sess struct{ SessionID string }
	if err := json.Unmarshal(wd.call("POST", "/session", caps), &sess); err != nil || sess.SessionID == "" {
		t.Fatalf("new WebDriver session: %v", err)
	}
	wd.base = root + "/session/" + sess.SessionID
	t.Cleanup(func() {
		req, _ := http.NewRequest("DELETE", wd.base, nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return wd
}

// call sends one WebDriver command and returns its "value".
func (wd *webDriver) call(method, path string, body any) json.RawMessage {
	wd.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			wd.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, wd.base+path, rd)
	if err != nil {
		wd.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := wd.hc.Do(req)
	if err != nil {
		wd.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var out struct {
		Value json.RawMessage `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		wd.t.Fatalf("webdriver %s %s: %s: %v", method, path, resp.Status, err)
	}
	if resp.StatusCode != 200 {
		wd.t.Fatalf("webdriver %s %s: %s: %s", method, path, resp.Status, out.Value)
	}
	return out.Value
}

func (wd *webDriver) navigate(u string) {
	wd.call("POST", "/url", map[string]string{"url": u})
}

// exec runs script in the page and returns its JSON result.
func (wd *webDriver) exec(script string) json.RawMessage {
	return wd.call("POST", "/execute/sync", map[string]any{"script": script, "args": []any{}})
}

// click clicks the element css selects, as a user would.
func (wd *webDriver) click(css string) {
	var el map[string]string
	json.Unmarshal(wd.call("POST", "/element", map[string]string{"using": "css selector", "value": css}), &el)
	id := el["element-6066-11e4-a52e-4f735466cecf"]
	if id == "" {
		wd.t.Fatalf("no element %s", css)
	}
	wd.call("POST", "/element/"+id+"/click", map[string]any{})
}

// setViewport resizes the window so that the page gets w×h CSS pixels.
func (wd *webDriver) setViewport(w, h int) {
	for range 2 { // the second pass corrects for the window's frame
		var inner [2]int
		json.Unmarshal(wd.exec("return [window.innerWidth, window.innerHeight]"), &inner)
		var rect struct{ Width, Height int }
		json.Unmarshal(wd.call("GET", "/window/rect", nil), &rect)
		if inner == [2]int{w, h} {
			return
		}
		wd.call("POST", "/window/rect", map[string]int{"width": rect.Width + w - inner[0], "height": rect.Height + h - inner[1]})
	}
}

func (wd *webDriver) screenshot() []byte {
	var b64 string
	json.Unmarshal(wd.call("GET", "/screenshot", nil), &b64)
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		wd.t.Fatalf("screenshot: %v", err)
	}
	return png
}
