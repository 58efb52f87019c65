package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"testing"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

// BenchmarkTunnel opens a CONNECT tunnel, exchanges one line with an echo
// origin and closes, through the gateway (in front of the demo's exits) and
// directly to one exit. Compare the two ns/op: the ratio is what the load
// tool (cmd/farmload) reports as tunnels/s, without process boundaries.
func BenchmarkTunnel(b *testing.B) {
	f := startFarm(b, func(c *demo.Config) { c.NoProbes, c.InsecureLinks = true, true }) // "direct" speaks plaintext to an exit
	echo := echoServer(b)
	gwAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("demo-country-de:demo"))
	exitAuth := "Bearer " + f.Token()
	for _, mode := range []struct {
		name, addr, auth string
	}{
		{"direct", f.Exits[0].Addr, exitAuth},
		{"gateway", f.GatewayAddr, gwAuth},
	} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := tunnelEcho(mode.addr, mode.auth, echo); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func tunnelEcho(proxy, auth, target string) error {
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: %s\r\n\r\n", target, target, auth)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("CONNECT: %s", resp.Status)
	}
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return err
	}
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		return fmt.Errorf("echo %q: %v", line, err)
	}
	return nil
}

// BenchmarkRequest sends keep-alive absolute-form GETs through the gateway
// and directly to one exit (the load tool's requests/s, in one process).
func BenchmarkRequest(b *testing.B) {
	f := startFarm(b, func(c *demo.Config) { c.NoProbes, c.InsecureLinks = true, true }) // "direct" speaks plaintext to an exit
	url := "http://" + f.Origin.HTTPAddr + "/ip"
	for _, mode := range []struct {
		name, proxy, auth string
	}{
		{"direct", "http://" + f.Exits[0].Addr, "Bearer " + f.Token()},
		{"gateway", "http://" + f.GatewayAddr, "Basic " + base64.StdEncoding.EncodeToString([]byte("demo-country-de:demo"))},
	} {
		b.Run(mode.name, func(b *testing.B) {
			proxyURL, _ := neturl.Parse(mode.proxy)
			client := &http.Client{Transport: &http.Transport{
				Proxy:               http.ProxyURL(proxyURL),
				MaxIdleConnsPerHost: 64,
			}}
			defer client.CloseIdleConnections()
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					req.Header.Set("Proxy-Authorization", mode.auth)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkTunnelStore compares authenticated CONNECT tunnels through a
// gateway whose customers, limits and usage are in Redis with one using the
// customer file (issue 5 wants the Redis one ≥ 0.9× the file one).
func BenchmarkTunnelStore(b *testing.B) {
	rdb, prefix := redistest.Shared(b)
	f := startFarm(b, func(c *demo.Config) { c.NoProbes, c.InsecureLinks = true, true }) // "direct" speaks plaintext to an exit
	rg := startRedisGateway(b, f, rdb, prefix)
	if err := rg.store.Put(context.Background(), auth.CustomerRecord{User: "demo", Password: "demo", Pools: []string{"resi"}, MaxConns: 10000, RatePerSec: 1e6}, true); err != nil {
		b.Fatal(err)
	}
	echo := echoServer(b)
	cred := "Basic " + base64.StdEncoding.EncodeToString([]byte("demo-country-de:demo"))
	for _, mode := range []struct{ name, addr string }{{"file", f.GatewayAddr}, {"redis", rg.addr}} {
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := tunnelEcho(mode.addr, cred, echo); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
