package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

// offLoopbackIP returns an IPv4 address of this machine that is not
// loopback, so that a server bound to it sees its local clients come from
// it rather than from 127.0.0.1: the honest way to test what an admin
// listener does with clients off loopback. Without one the test skips,
// except under CI=true.
func offLoopbackIP(t testing.TB) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	msg := "no non-loopback IPv4 address on this machine to test the admin listener off loopback"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freeAddrOn is freeAddr on ip.
func freeAddrOn(t testing.TB, ip string) string {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// adminGet GETs url with the bearer token ("" for none) and returns the
// status and body.
func adminGet(t testing.TB, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrapeWith is scrape with a bearer token.
func scrapeWith(t testing.TB, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	status, body := adminGet(t, url, token)
	if status != 200 {
		t.Fatalf("GET %s: %d %s", url, status, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// opsFarm is a gossip farm of real processes as an operator runs one, with
// every admin listener off loopback behind a token: a gateway (DC eu,
// customers in Redis, --metrics-customers 1) and two exits, x1 in eu and
// x2 in us, each with --admin.
type opsFarm struct {
	gw, gwAdmin    string // customer listener (loopback), admin (off loopback)
	exitAdmin      map[string]string
	adminToken     string
	adminTokenFile string
	origin         *demo.Origin
	gateway        *process
}

func startOpsFarm(t *testing.T) *opsFarm {
	t.Helper()
	ip := offLoopbackIP(t)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	os.WriteFile(token, []byte("ops-exit-token\n"), 0o600)
	f := &opsFarm{adminToken: "ops-admin-token", adminTokenFile: filepath.Join(dir, "admin-token"), exitAdmin: map[string]string{}}
	os.WriteFile(f.adminTokenFile, []byte(f.adminToken+"\n"), 0o600)
	keyFile := filepath.Join(dir, "gossip.key")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("ops-farm-gossip-key-32-bytes!!!!"))+"\n"), 0o600)
	redisURL := "redis://" + redistest.Start(t).Addr() + "/0"
	for _, user := range []string{"demo", "light"} {
		farmgateCmd(t, "demo\n", "customers", "add", user, "--pools", "resi", "--password-stdin", "--redis-url", redisURL)
	}
	origin := startDemoOrigin(t)
	f.origin = origin

	gwGossip := freeAddr(t)
	f.gw, f.gwAdmin = freeAddr(t), freeAddrOn(t, ip)
	links := newPKI(t)
	f.gateway = start(t, links.tls("gateway", "--listen", f.gw, "--admin", f.gwAdmin, "--admin-token-file", f.adminTokenFile,
		"--dc", "eu", "--redis-url", redisURL, "--token-file", token, "--metrics-customers", "1",
		"--gossip-listen", gwGossip, "--gossip-key-file", keyFile)...)
	waitListening(t, f.gw)
	for i, x := range []struct{ id, dc, country string }{{"x1", "eu", "de"}, {"x2", "us", "us"}} {
		f.exitAdmin[x.id] = freeAddrOn(t, ip)
		start(t, links.tls("exit", "--listen", freeAddr(t), "--id", x.id, "--dc", x.dc, "--pool", "resi", "--country", x.country,
			"--egress", fmt.Sprintf("127.0.%d.1", 120+i), "--token-file", token, "--allow-dest", "127.0.0.0/8",
			"--admin", f.exitAdmin[x.id], "--admin-token-file", f.adminTokenFile,
			"--gossip-listen", freeAddr(t), "--join", gwGossip, "--gossip-key-file", keyFile)...)
	}
	waitFor(t, 20*time.Second, "both exits healthy at the gateway", func() error {
		status, body := adminGet(t, "http://"+f.gwAdmin+"/api/exits", f.adminToken)
		var list []struct{ ID, State string }
		if err := json.Unmarshal([]byte(body), &list); status != 200 || err != nil {
			return fmt.Errorf("%d %s", status, body)
		}
		healthy := 0
		for _, e := range list {
			if e.State == "healthy" {
				healthy++
			}
		}
		if healthy != 2 {
			return fmt.Errorf("exits %v", list)
		}
		return nil
	})
	return f
}

// The operator's view of a farm, every admin listener off loopback:
// the exits' own admin listeners, the new metrics, `farmgate status`, and
// the Grafana dashboard's queries against a real gateway's /metrics.
func TestOperatorsViewOfTheFarm(t *testing.T) {
	t.Parallel()
	needCurl(t)
	f := startOpsFarm(t)

	t.Run("exit admin listener", func(t *testing.T) {
		base := "http://" + f.exitAdmin["x1"]
		for _, p := range []string{"/healthz", "/readyz"} {
			if status, body := adminGet(t, base+p, ""); status != 200 {
				t.Errorf("exit %s without token (probes are free): %d %s", p, status, body)
			}
		}
		for _, p := range []string{"/metrics", "/api/cluster", "/api/exit"} {
			if status, _ := adminGet(t, base+p, ""); status != 401 {
				t.Errorf("exit %s off loopback without token: %d, want 401", p, status)
			}
			if status, _ := adminGet(t, base+p, "wrong"); status != 401 {
				t.Errorf("exit %s off loopback with a wrong token: %d, want 401", p, status)
			}
		}
		status, body := adminGet(t, base+"/api/cluster", f.adminToken)
		var members []struct{ ID, Role, DC, State string }
		if err := json.Unmarshal([]byte(body), &members); status != 200 || err != nil {
			t.Fatalf("exit /api/cluster: %d %v %s", status, err, body)
		}
		roles := map[string]int{}
		for _, m := range members {
			if m.State == "alive" {
				roles[m.Role]++
			}
		}
		if roles["gateway"] != 1 || roles["exit"] != 2 {
			t.Errorf("exit x1's /api/cluster: alive by role %v, want 1 gateway and 2 exits: %s", roles, body)
		}
		status, body = adminGet(t, base+"/api/exit", f.adminToken)
		if status != 200 || !strings.Contains(body, `"id": "x1"`) {
			t.Errorf("exit /api/exit: %d %s", status, body)
		}
		fams := scrapeWith(t, base+"/metrics", f.adminToken)
		for _, c := range []struct {
			name   string
			labels map[string]string
			want   func(float64) bool
			desc   string
		}{
			{"farmgate_exitnode_ready", nil, eq(1), "1"},
			{"farmgate_exitnode_active_tunnels", nil, eq(0), "0"},
			{"farmgate_gossip_members", map[string]string{"role": "gateway", "state": "alive"}, eq(1), "1"},
			{"farmgate_gossip_members", map[string]string{"role": "exit", "state": "alive"}, eq(2), "2"},
			{"farmgate_gossip_health_score", nil, atLeast(0), "present"},
			{"go_goroutines", nil, atLeast(1), "present"},
		} {
			if v, ok := value(fams, c.name, c.labels); !ok || !c.want(v) {
				t.Errorf("exit /metrics %s%v = %v (found %v), want %s", c.name, c.labels, v, ok, c.desc)
			}
		}
	})

	// Traffic: demo downloads through x1 and holds a tunnel; light makes
	// one request and one refused for its zone; an intruder fails logins
	// until locked out.
	for range 3 {
		if r := curl(t, "http://demo-country-de:demo@"+f.gw, "http://"+f.origin.HTTPAddr+"/bytes?n=20000"); r.status != 200 {
			t.Fatalf("demo download: %d; gateway log:\n%s", r.status, f.gateway.output())
		}
	}
	if r := curl(t, "http://light:demo@"+f.gw, "http://"+f.origin.HTTPAddr+"/ip"); r.status != 200 {
		t.Fatalf("light request: %d", r.status)
	}
	if r := curl(t, "http://light-zone-dc:demo@"+f.gw, "http://"+f.origin.HTTPAddr+"/ip"); r.status != 403 {
		t.Fatalf("light in zone dc: %d, want 403", r.status)
	}
	for i := 0; ; i++ {
		r := curl(t, "http://intruder:guess"+fmt.Sprint(i)+"@"+f.gw, "http://"+f.origin.HTTPAddr+"/ip")
		if r.status == 429 {
			break
		}
		if i == 30 {
			t.Fatalf("intruder never throttled: last %d", r.status)
		}
	}
	echo := echoServer(t)
	held, _ := dialTunnel(t, &demo.Farm{GatewayAddr: f.gw}, "demo", echo, "")
	defer held.Close()

	t.Run("gateway metrics", func(t *testing.T) {
		checks := []struct {
			name   string
			labels map[string]string
			want   func(float64) bool
			desc   string
		}{
			{"farmgate_customer_requests_total", map[string]string{"customer": "demo"}, eq(3), "3 (the held tunnel has not ended)"},
			{"farmgate_customer_requests_total", map[string]string{"customer": "other"}, eq(2), "2 (light's)"},
			{"farmgate_customer_errors_total", map[string]string{"customer": "other", "reason": "pool_forbidden"}, eq(1), "1"},
			{"farmgate_customer_bytes_total", map[string]string{"customer": "demo", "direction": "down"}, atLeast(60000), "≥ 60000"},
			{"farmgate_bytes_total", map[string]string{"exit": "x1", "direction": "down"}, atLeast(60000), "≥ 60000"},
			{"farmgate_redis_up", nil, eq(1), "1"},
			{"farmgate_redis_breaker_opens_total", nil, eq(0), "0"},
			{"farmgate_redis_pool_connections", map[string]string{"state": "idle"}, atLeast(0), "present"},
			{"farmgate_gossip_members", map[string]string{"role": "exit", "state": "alive"}, eq(2), "2"},
			{"farmgate_gossip_members", map[string]string{"role": "gateway", "state": "alive"}, eq(1), "1"},
			{"farmgate_gossip_health_score", nil, eq(0), "0"},
			{"farmgate_login_lockouts_total", map[string]string{"scope": "client_user"}, eq(1), "1"},
			{"farmgate_login_throttled_total", nil, atLeast(1), "≥ 1"},
		}
		waitFor(t, 10*time.Second, "the gateway's series", func() error {
			fams := scrapeWith(t, "http://"+f.gwAdmin+"/metrics", f.adminToken)
			var bad []string
			for _, c := range checks {
				if v, ok := value(fams, c.name, c.labels); !ok || !c.want(v) {
					bad = append(bad, fmt.Sprintf("%s%v = %v (found %v), want %s", c.name, c.labels, v, ok, c.desc))
				}
			}
			if _, ok := value(fams, "farmgate_customer_requests_total", map[string]string{"customer": "light"}); ok {
				bad = append(bad, "light, not in the top 1, has its own series")
			}
			if len(bad) > 0 {
				return fmt.Errorf("%s", strings.Join(bad, "\n"))
			}
			return nil
		})
	})

	t.Run("farmgate status", func(t *testing.T) {
		run := func(args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, farmgateBin(t), append([]string{"status"}, args...)...).CombinedOutput()
			return string(out), err
		}
		out, err := run("--admin", "http://"+f.gwAdmin)
		if err == nil || !strings.Contains(out, "--token") || !strings.Contains(out, "401") {
			t.Errorf("status off loopback without a token: %v\n%s", err, out)
		}
		out, err = run("--admin", f.gwAdmin, "--token", f.adminToken)
		if err != nil {
			t.Fatalf("status: %v\n%s", err, out)
		}
		t.Logf("farmgate status:\n%s", out)
		for _, want := range []string{
			"gateway ready: yes",
			"EXITS: 2 (2 healthy)",
			"DC eu: 1 healthy", "DC us: 1 healthy",
			"x1", "x2",
			"GATEWAYS: 1 alive of 1 known",
			"CUSTOMERS ONLINE (live tunnels on this gateway): 1", "demo: 1 tunnels",
			"pool_forbidden 1", "rate_limited ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q", want)
			}
		}
		if !regexp.MustCompile(`LAST MINUTE \(this gateway\): \d+ requests, \d+ errors`).MatchString(out) {
			t.Errorf("status output has no last-minute line")
		}
		out2, err := run("--admin-token-file", f.adminTokenFile, "--admin", f.gwAdmin)
		if err != nil || !strings.Contains(out2, "EXITS: 2") {
			t.Errorf("status with --admin-token-file: %v\n%s", err, out2)
		}
	})

	t.Run("grafana dashboard queries existing series", func(t *testing.T) {
		names := grafanaMetrics(t, filepath.Join("..", "deploy", "grafana", "farmgate.json"))
		if len(names) < 20 {
			t.Fatalf("the dashboard queries only %d metrics: %v", len(names), names)
		}
		fams := scrapeWith(t, "http://"+f.gwAdmin+"/metrics", f.adminToken)
		for _, n := range names {
			if fams[n] == nil {
				t.Errorf("deploy/grafana/farmgate.json queries %s, which the gateway's /metrics does not serve", n)
			}
		}
	})
}

// grafanaMetrics returns the metric families the dashboard's queries name,
// histogram suffixes folded onto their family.
func grafanaMetrics(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	metric := regexp.MustCompile(`\b(farmgate_[a-z_]+|go_[a-z_]+|process_[a-z_]+)\b`)
	seen := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if strings.HasSuffix(m, "_seconds"+suf) {
						m = strings.TrimSuffix(m, suf)
					}
				}
				seen[m] = true
			}
		}
	}
	var out []string
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}
