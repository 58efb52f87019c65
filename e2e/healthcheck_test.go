package e2e

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/exitnode"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/pool"
)

// The gateway's default health check of each kind of exit, against real
// exits and listeners: what each answer means to the pool.
func TestGatewayChecksExits(t *testing.T) {
	t.Parallel()
	const token = "check-token"
	origin := echoHTTP(t)
	// exit runs a farmgate exit with mod applied; it stops with the test,
	// or before when stop is true.
	exit := func(t *testing.T, stop bool, mod func(*exitnode.Config)) string {
		cfg := exitnode.DefaultConfig()
		cfg.ID, cfg.Pool, cfg.Token = "x", "resi", token
		cfg.Egress = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		cfg.AllowDest = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		if mod != nil {
			mod(&cfg)
		}
		s, err := exitnode.New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go s.Serve(ln)
		shut := func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.Shutdown(ctx)
		}
		if stop {
			shut()
		} else {
			t.Cleanup(shut)
		}
		return ln.Addr().String()
	}
	// listener accepts TCP connections and closes them: a third-party
	// upstream as far as a TCP connect can tell.
	listener := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	tests := []struct {
		name     string
		addr     func(t *testing.T) string // the exit's URL
		probeURL string
		fail     string // "" for a pass, else part of the error
	}{
		{name: "farmgate exit that can serve", addr: func(t *testing.T) string { return "farmgate://" + exit(t, false, nil) }},
		{name: "farmgate exit stopped", addr: func(t *testing.T) string { return "farmgate://" + exit(t, true, nil) }, fail: "exit unreachable"},
		{
			name: "farmgate exit with another token",
			addr: func(t *testing.T) string {
				return "farmgate://" + exit(t, false, func(c *exitnode.Config) { c.Token = "other" })
			},
			fail: "407 unauthorized",
		},
		{
			name: "farmgate exit whose egress IP is gone",
			addr: func(t *testing.T) string {
				return "farmgate://" + exit(t, false, func(c *exitnode.Config) {
					c.Egress = append(c.Egress, netip.MustParseAddr("192.0.2.7"))
				})
			},
			fail: "503 egress_unavailable",
		},
		{
			name: "farmgate exit and a probe URL it fetches", probeURL: "http://" + origin + "/",
			addr: func(t *testing.T) string { return "farmgate://" + exit(t, false, nil) },
		},
		{
			name: "farmgate exit and a probe URL it refuses", probeURL: "http://" + origin + "/",
			addr: func(t *testing.T) string {
				return "farmgate://" + exit(t, false, func(c *exitnode.Config) { c.AllowDest = nil })
			},
			fail: "destination_forbidden",
		},
		{name: "http upstream listening", addr: func(t *testing.T) string { return "http://u:p@" + listener(t) }},
		{name: "socks5 upstream listening", addr: func(t *testing.T) string { return "socks5://u:p@" + listener(t) }},
		{name: "socks5 upstream gone", addr: func(t *testing.T) string { return "socks5://" + freeAddr(t) }, fail: "exit unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := pool.New(pool.DefaultConfig(), discard())
			if err != nil {
				t.Fatal(err)
			}
			acfg := auth.DefaultConfig()
			acfg.Logger = discard()
			store, err := auth.ParseFileConfig([]byte("customers:\n  - user: demo\n    password: demo\n    pools: [resi]\n"), "test", acfg)
			if err != nil {
				t.Fatal(err)
			}
			gcfg := gateway.DefaultConfig()
			gcfg.ExitToken = token
			gw, err := gateway.New(gcfg, store, p, discard())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			err = gw.CheckExit(ctx, &pool.Exit{ID: "x", Pool: "resi", Addr: tc.addr(t)}, tc.probeURL)
			switch {
			case tc.fail == "" && err != nil:
				t.Fatalf("CheckExit: %v, want a pass", err)
			case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
				t.Fatalf("CheckExit: %v, want a failure with %q", err, tc.fail)
			}
		})
	}
}
