package exitnode_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"testing"

	"github.com/farmgate/farmgate/exitnode"
)

func TestTokenCheck(t *testing.T) {
	t.Parallel()
	_, exit := startExit(t, testConfig())
	echo := startEcho(t)
	tests := []struct {
		name   string
		auth   []string // Proxy-Authorization values
		status int
	}{
		{"missing", nil, http.StatusProxyAuthRequired},
		{"wrong token", []string{"Bearer nope"}, http.StatusProxyAuthRequired},
		{"token prefix", []string{"Bearer " + testToken[:4]}, http.StatusProxyAuthRequired},
		{"basic scheme", []string{"Basic " + testToken}, http.StatusProxyAuthRequired},
		{"no scheme", []string{testToken}, http.StatusProxyAuthRequired},
		{"two headers", []string{"Bearer " + testToken, "Bearer " + testToken}, http.StatusProxyAuthRequired},
		{"right", []string{"Bearer " + testToken}, http.StatusOK},
		{"right, scheme case-insensitive", []string{"bearer " + testToken}, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{"Proxy-Authorization": tc.auth}
			t.Run("connect", func(t *testing.T) {
				_, _, resp := connect(t, exit, echo.addr(), h, nil)
				checkAuthReply(t, resp, tc.status)
			})
			t.Run("http", func(t *testing.T) {
				resp, err := proxyClient(t, exit, h).Get("http://" + echo.addr() + "/")
				if tc.status == http.StatusOK {
					// the echo server is no HTTP server: any reply but 407 means the token passed
					if err == nil && resp.StatusCode == http.StatusProxyAuthRequired {
						t.Fatalf("status 407 with the right token")
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				checkAuthReply(t, resp, tc.status)
			})
			for _, path := range []string{exitnode.InfoPath, exitnode.HealthPath} {
				t.Run(path, func(t *testing.T) {
					req, _ := http.NewRequest(http.MethodGet, "http://"+exit+path, nil)
					req.Header = h.Clone()
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					checkAuthReply(t, resp, tc.status)
				})
			}
		})
	}
}

func checkAuthReply(t *testing.T, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		t.Fatalf("status %d, want %d", resp.StatusCode, want)
	}
	if want != http.StatusProxyAuthRequired {
		return
	}
	if got := resp.Header.Get(exitnode.HeaderError); got != "unauthorized" {
		t.Errorf("X-Farmgate-Error = %q, want unauthorized", got)
	}
	if v := resp.Header.Get("Proxy-Authenticate"); v != "" {
		t.Errorf("Proxy-Authenticate = %q, want none", v)
	}
	if b, _ := io.ReadAll(resp.Body); len(b) != 0 {
		t.Errorf("407 body %q, want empty", b)
	}
}

func TestInfoEndpoint(t *testing.T) {
	t.Parallel()
	_, exit := startExit(t, testConfig())
	req, _ := http.NewRequest(http.MethodGet, "http://"+exit+exitnode.InfoPath, nil)
	req.Header = authHeader()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "dc", "pool", "country", "city", "egress", "max_tunnels", "version"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("info JSON lacks %q: %v", k, raw)
		}
	}
	b, _ := json.Marshal(raw)
	var info exitnode.Info
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"),
		netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.5")}
	if info.ID != "t-1" || info.DC != "eu" || info.Pool != "resi" || info.Country != "DE" ||
		info.MaxTunnels != 10000 || info.Version != exitnode.Version || len(info.Egress) != len(want) {
		t.Fatalf("info = %+v", info)
	}
	for i := range want {
		if info.Egress[i] != want[i] {
			t.Errorf("egress[%d] = %s, want %s", i, info.Egress[i], want[i])
		}
	}
}
