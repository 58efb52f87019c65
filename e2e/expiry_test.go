package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// An account that expires loses its live tunnels and its long answers at
// its expiry, not only its next login; another customer's stay.
func TestExpiryCutsLiveTunnelsAndAnswers(t *testing.T) {
	t.Parallel()
	soon := time.Now().Add(2 * time.Second)
	customers := func(renewedUntil time.Time) string {
		return fmt.Sprintf("customers:\n  - user: demo\n    password: demo\n    pools: [resi]\n    expires: %s\n"+
			"  - user: renewed\n    password: demo\n    pools: [resi]\n    expires: %s\n"+
			"  - user: other\n    password: demo\n    pools: [resi]\n",
			soon.UTC().Format(time.RFC3339Nano), renewedUntil.UTC().Format(time.RFC3339Nano))
	}
	f := startFarm(t, func(c *demo.Config) {
		c.Customers = customers(soon)
		c.Gateway.CheckInterval = 100 * time.Millisecond
	})
	// A 1 MiB answer every 100 ms, for 10 s: the gateway visits its
	// meter, and the account, every MiB.
	o := startCountingOrigin(t, time.Minute, func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("x", 1<<20)
		for range 100 {
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(100 * time.Millisecond)
		}
	})
	echo := echoServer(t)
	mine, mineBr := dialTunnel(t, f, "demo", echo, "")
	theirs, theirsBr := dialTunnel(t, f, "other", echo, "")
	renewed, renewedBr := dialTunnel(t, f, "renewed", echo, "")
	// The account "renewed" is renewed before it expires, as a reload of
	// the customer file does it.
	store, err := auth.ParseFileConfig([]byte(customers(time.Now().Add(time.Hour))), "renewal", auth.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	f.Gateway.SetAuthenticator(store)
	type result struct {
		n   int
		err string
		at  time.Duration
	}
	start := time.Now()
	download := make(chan result, 1)
	go func() {
		r := curl(t, proxyURL(f, "demo"), "http://"+o.addr+"/")
		download <- result{n: len(r.body), at: time.Since(start)}
	}()

	mine.SetReadDeadline(time.Now().Add(6 * time.Second))
	_, err = io.ReadAll(mineBr)
	cut := time.Since(start)
	if err != nil || cut > 4*time.Second {
		t.Fatalf("the expired customer's tunnel: %v after %s; want it closed at about 2 s", err, cut)
	}
	if d := <-download; d.n >= 100<<20 || d.at > 5*time.Second {
		t.Fatalf("the expired customer's download: %d bytes after %s; want it cut at about 2 s", d.n, d.at)
	}
	for who, c := range map[string]*tunnelConn{"other": {theirs, theirsBr}, "renewed": {renewed, renewedBr}} {
		io.WriteString(c.c, "still here\n")
		c.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if line, err := c.br.ReadString('\n'); err != nil || line != "still here\n" {
			t.Fatalf("%s customer's tunnel: %q %v", who, line, err)
		}
	}
}
