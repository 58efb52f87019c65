package e2e

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
)

// gathered reads the values of the farm's metric family name by the value
// of one label.
func gathered(t *testing.T, f *demo.Farm, name, label string) map[string]float64 {
	t.Helper()
	fams, err := f.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, fam := range fams {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			got[labelOf(m, label)] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return got
}

func linkUses(t *testing.T, f *demo.Farm) map[string]float64 {
	return gathered(t, f, "farmgate_exit_links_total", "link")
}

// originTunnels counts the http:// requests that went over kept and new
// tunnels to origins.
func originTunnels(t *testing.T, f *demo.Farm) map[string]float64 {
	return gathered(t, f, "farmgate_origin_tunnels_total", "tunnel")
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// echoTunnel runs one short tunnel to an echo server through us-1 and waits
// until the gateway has closed it.
func echoTunnel(t *testing.T, f *demo.Farm, echo, msg string) {
	t.Helper()
	c, br := dialTunnel(t, f, "demo-country-us", echo, "")
	io.WriteString(c, msg)
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(br)
	if err != nil || string(got) != msg {
		t.Fatalf("echo %q %v, want %q", got, err, msg)
	}
	c.Close()
	// The gateway keeps the link before it counts the tunnel closed.
	waitFor(t, 5*time.Second, "tunnel closed at the gateway", func() error {
		if n := gathered(t, f, "farmgate_tunnels_active", "exit")["us-1"]; n != 0 {
			return fmt.Errorf("%v tunnels active", n)
		}
		return nil
	})
}

// Short tunnels one after another to one exit go over one kept link: one
// TCP handshake with the exit, not one per tunnel.
func TestShortTunnelsKeepTheirLinkToTheExit(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	echo := echoServer(t)
	for i := range 10 {
		echoTunnel(t, f, echo, "tunnel "+string(rune('a'+i)))
	}
	if got := linkUses(t, f); got["new"] != 1 || got["kept"] != 9 {
		t.Fatalf("links: %v, want 1 new and 9 kept", got)
	}
}

// A kept link the exit closed meanwhile (here: the exit restarted) is
// replaced by a new connection, and the customer sees nothing of it.
func TestStaleLinkIsReplaced(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	echo := echoServer(t)
	echoTunnel(t, f, echo, "before")
	if err := f.StopExit("us-1"); err != nil {
		t.Fatal(err)
	}
	if err := f.RestartExit("us-1"); err != nil {
		t.Fatal(err)
	}
	echoTunnel(t, f, echo, "after")
	echoTunnel(t, f, echo, "again")
	if got := linkUses(t, f); got["stale"] != 1 || got["new"] != 2 || got["kept"] != 1 {
		t.Fatalf("links: %v, want 1 stale, 2 new, 1 kept", got)
	}
}

// A tunnel that moves megabytes both ways delivers every byte and the
// half-close. On a plaintext link it switches to raw (the kernel splices
// the rest); the link is not kept after that, and the next tunnel gets a
// new one. A TLS link, which nothing splices, stays framed and is kept.
func TestBulkTunnelOverALink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		insecure          bool
		wantNew, wantKept float64
	}{
		{"plaintext link switches to raw", true, 2, 1},
		{"tls link stays framed and is kept", false, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := startFarm(t, func(c *demo.Config) { c.InsecureLinks = tc.insecure })
			echo := echoServer(t)
			echoTunnel(t, f, echo, "warm") // leaves a kept link to us-1
			c, br := dialTunnel(t, f, "demo-country-us", echo, "")
			payload := make([]byte, 4<<20+99)
			rand.Read(payload)
			go func() {
				c.Write(payload)
				c.(*net.TCPConn).CloseWrite()
			}()
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			got, err := io.ReadAll(br)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("echo of %d bytes: got %d bytes intact=%v, %v", len(payload), len(got), bytes.Equal(got, payload), err)
			}
			c.Close()
			echoTunnel(t, f, echo, "after")
			if got := linkUses(t, f); got["kept"] != tc.wantKept || got["new"] != tc.wantNew {
				t.Fatalf("links: %v, want %v new and %v kept", got, tc.wantNew, tc.wantKept)
			}
		})
	}
}

// Many customers at once, short and long tunnels mixed, over the links the
// gateway keeps: every byte arrives, nothing is lost or crosses tunnels,
// and links are both made and kept (run it with -race).
func TestManyTunnelsOverLinksAtOnce(t *testing.T) {
	t.Parallel()
	f := startFarm(t, nil)
	echo := echoServer(t)
	const workers, each = 16, 15
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			errs <- func() error {
				for i := range each {
					size := 64 + w*10 + i
					if i%5 == 4 {
						size = 64<<10 + w // a long one: raw
					}
					msg := bytes.Repeat([]byte{byte('a' + (w+i)%26)}, size)
					c, br, err := openTunnel(f, "demo", echo, "")
					if err != nil {
						return fmt.Errorf("worker %d tunnel %d: %w", w, i, err)
					}
					go func() {
						c.Write(msg)
						c.(*net.TCPConn).CloseWrite()
					}()
					c.SetReadDeadline(time.Now().Add(20 * time.Second))
					got, err := io.ReadAll(br)
					c.Close()
					if err != nil || !bytes.Equal(got, msg) {
						return fmt.Errorf("worker %d tunnel %d: %d of %d bytes back, %v", w, i, len(got), len(msg), err)
					}
				}
				return nil
			}()
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := linkUses(t, f); got["kept"] == 0 || got["new"] == 0 {
		t.Fatalf("links: %v, want some kept and some new", got)
	}
}
