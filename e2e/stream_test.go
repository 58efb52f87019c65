package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/internal/testkit/duplextest"
)

// proxyClient sends absolute-form requests through the demo farm's gateway
// as user.
func proxyClient(t *testing.T, proxy string) *http.Client {
	t.Helper()
	pu, err := url.Parse(proxy)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// An answer streams back through the gateway and an exit while the
// customer is still sending the body: the origin echoes each line as it
// comes, and the customer sends the next line only after it read the echo
// of the last. A gateway that sends the whole body before it reads the
// answer, or that holds the answer's head back, waits forever.
func TestFullDuplexThroughTheGateway(t *testing.T) {
	t.Parallel()
	origin := duplextest.EchoOrigin(t)
	f := startFarm(t, nil)
	h := duplextest.Exchange(t, proxyClient(t, proxyURL(f, "demo")), origin.URL+"/stream")
	if h.Get("X-Farmgate-Exit") == "" {
		t.Errorf("answer without X-Farmgate-Exit: %v", h)
	}
}

// An origin that answers a large upload before reading it (413 here) is
// heard: the customer gets that answer, not a 502 blaming the exit for the
// upload it could not finish sending.
func TestEarlyAnswerToALargeUpload(t *testing.T) {
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	t.Cleanup(origin.Close)
	f := startFarm(t, nil)
	hc := proxyClient(t, proxyURL(f, "demo"))
	for i := range 2 {
		body := strings.NewReader(strings.Repeat("x", 64<<20))
		resp, err := hc.Post(origin.URL+"/upload", "application/octet-stream", body)
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge || string(got) != "too large\n" {
			t.Fatalf("upload %d: %d %q (X-Farmgate-Error %q), want the origin's 413",
				i, resp.StatusCode, got, resp.Header.Get("X-Farmgate-Error"))
		}
	}
}

// A customer who leaves in the middle of an answer, or of the body they
// send, frees the exit's slot, and the origin stops sending: neither the
// gateway nor the exit goes on fetching an answer nobody will read.
func TestCustomerLeavingMidwayStopsTheTransfer(t *testing.T) {
	t.Parallel()
	var sending atomic.Int32 // origin handlers still at work
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sending.Add(1)
		defer sending.Add(-1)
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		for range 1000 { // an answer that takes 10 s
			if _, err := w.Write(make([]byte, 1024)); err != nil {
				return
			}
			_ = rc.Flush()
			time.Sleep(10 * time.Millisecond)
		}
	}))
	t.Cleanup(origin.Close)
	f := startFarm(t, nil)
	active := func() int { return activeTunnels(f) }
	host := strings.TrimPrefix(origin.URL, "http://")
	auth := "Proxy-Authorization: Basic ZGVtbzpkZW1v\r\n" // demo:demo
	for _, c := range []struct {
		name, head string
		answered   bool // the customer reads some of the answer before leaving
	}{
		{"GET, gone mid-answer", "GET " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\n" + auth + "\r\n", true},
		{"chunked POST, gone mid-answer", "POST " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\n" + auth +
			"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", true},
		{"POST, gone mid-body", "POST " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\n" + auth +
			"Content-Length: 100000\r\n\r\nabc", false},
		{"CONNECT, gone mid-answer", "CONNECT " + host + " HTTP/1.1\r\n" + auth + "\r\nGET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n", true},
	} {
		conn, err := net.Dial("tcp", f.GatewayAddr)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, c.head); err != nil {
			t.Fatal(err)
		}
		if c.answered {
			if _, err := io.ReadFull(conn, make([]byte, 3000)); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
		} else {
			waitFor(t, 3*time.Second, c.name+": counted active", func() error {
				if active() == 0 {
					return fmt.Errorf("no exit counts it")
				}
				return nil
			})
		}
		if n := active(); n != 1 {
			t.Fatalf("%s: %d active before leaving, want 1", c.name, n)
		}
		_ = conn.(*net.TCPConn).SetLinger(0) // leave with a reset
		conn.Close()
		waitFor(t, 3*time.Second, c.name+": slot freed and the origin stopped", func() error {
			if n := active(); n != 0 {
				return fmt.Errorf("%d still active", n)
			}
			if n := sending.Load(); n != 0 {
				return fmt.Errorf("the origin still sends %d answers", n)
			}
			return nil
		})
	}
}

// A forwarded request whose customer moves no byte either way for
// IdleTimeout is ended, as an idle tunnel is: one who stops reading the
// answer, or stops sending the body, or waits on an answer that stalled,
// frees the exit's slot. A slow but steady answer is not cut.
func TestIdleForwardedRequestIsEnded(t *testing.T) {
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/stall" { // one byte, then nothing for 10 s
			_, _ = w.Write([]byte("x"))
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		if r.URL.Path == "/trickle" { // a byte every 100 ms for 3 s
			rc := http.NewResponseController(w)
			for range 30 {
				if _, err := w.Write([]byte("x")); err != nil {
					return
				}
				_ = rc.Flush()
				time.Sleep(100 * time.Millisecond)
			}
			return
		}
		for range 10000 { // 640 MB, far more than any socket buffer
			if _, err := w.Write(make([]byte, 64<<10)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(origin.Close)
	f := startFarm(t, func(c *demo.Config) { c.Gateway.IdleTimeout = time.Second })
	active := func() int { return activeTunnels(f) }
	host := strings.TrimPrefix(origin.URL, "http://")
	auth := "Proxy-Authorization: Basic ZGVtbzpkZW1v\r\n" // demo:demo
	for _, c := range []struct{ name, head string }{
		{"never reads the answer", "GET " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\n" + auth + "\r\n"},
		{"stops sending the body", "POST " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\n" + auth +
			"Content-Length: 100000\r\n\r\nabc"},
		{"reads an answer that stalls", "GET " + origin.URL + "/stall HTTP/1.1\r\nHost: " + host + "\r\n" + auth + "\r\n"},
	} {
		conn, err := net.Dial("tcp", f.GatewayAddr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, c.head); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Second, c.name+": counted active", func() error {
			if active() == 0 {
				return fmt.Errorf("no exit counts it")
			}
			return nil
		})
		waitFor(t, 8*time.Second, c.name+": ended", func() error {
			if n := active(); n != 0 {
				return fmt.Errorf("%d still active", n)
			}
			return nil
		})
		conn.Close()
	}

	r := curl(t, proxyURL(f, "demo"), origin.URL+"/trickle")
	if r.status != http.StatusOK || r.body != strings.Repeat("x", 30) {
		t.Fatalf("slow answer: %d %q, want 200 and all 30 bytes", r.status, r.body)
	}
}

// activeTunnels is how many tunnels and requests the farm's exits carry, as
// the gateway counts them.
func activeTunnels(f *demo.Farm) int {
	n := 0
	for _, e := range f.Pool.Exits() {
		n += e.ActiveTunnels
	}
	return n
}

// quotaMeter is a Meter whose every customer has the same quota.
type quotaMeter struct {
	quota int64
	used  atomic.Int64
}

func (m *quotaMeter) Add(_, _ string, up, down int64) { m.used.Add(up + down) }
func (m *quotaMeter) OverQuota(*auth.Customer) bool   { return m.used.Load() >= m.quota }

// A download through absolute-form HTTP is cut soon after the customer's
// quota is used up, as a tunnel is, not only counted once it has ended.
func TestLongAnswerIsCutAtQuota(t *testing.T) {
	t.Parallel()
	meter := &quotaMeter{quota: 5 << 20}
	f := startFarm(t, func(c *demo.Config) { c.Gateway.Meter = meter })
	r := curl(t, proxyURL(f, "demo"), "http://"+f.Origin.HTTPAddr+"/bytes?n=104857600") // 100 MiB
	got := int64(len(r.body))
	if got >= 100<<20 || got < 5<<20 {
		t.Fatalf("downloaded %d bytes with a quota of 5 MiB; want it cut a little past 5 MiB", got)
	}
	if used := meter.used.Load(); used < got {
		t.Errorf("metered %d bytes of %d downloaded", used, got)
	}
	t.Logf("cut after %d bytes, metered %d", got, meter.used.Load())
}
