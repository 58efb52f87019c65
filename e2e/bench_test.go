package e2e

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"github.com/farmgate/farmgate/internal/demo"
	"io"
	"net"
	"net/http"
	"testing"
)

// BenchmarkTunnel opens a CONNECT tunnel, exchanges one line with an echo
// origin and closes, through the gateway (in front of the demo's exits) and
// directly to one exit. Compare the two ns/op: the ratio is what the load
// tool (cmd/farmload) reports as tunnels/s, without process boundaries.
func BenchmarkTunnel(b *testing.B) {
	f := startFarm(b, func(c *demo.Config) { c.NoProbes = true })
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
