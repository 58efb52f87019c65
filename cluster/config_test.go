package cluster_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/cluster"
)

func TestConfigValidateNamesTheField(t *testing.T) {
	t.Parallel()
	good := func() cluster.Config {
		c := cluster.DefaultConfig()
		c.Keys = [][]byte{key(1)}
		c.Meta = exitMeta(1)
		return c
	}
	tests := []struct {
		name  string
		edit  func(*cluster.Config)
		field string // "" = valid
	}{
		{"LAN default with a key", func(*cluster.Config) {}, ""},
		{"WAN preset", func(c *cluster.Config) { w := cluster.WANConfig(); w.Keys, w.Meta = c.Keys, c.Meta; *c = w }, ""},
		{"non-loopback bind and advertise", func(c *cluster.Config) { c.BindAddr, c.AdvertiseAddr = "10.1.2.3:7946", "192.0.2.10:7946" }, ""},
		{"insecure without key", func(c *cluster.Config) { c.Keys, c.Insecure = nil, true }, ""},
		{"no key", func(c *cluster.Config) { c.Keys = nil }, "Keys"},
		{"short key", func(c *cluster.Config) { c.Keys = [][]byte{[]byte("short")} }, "Keys[0]"},
		{"keys and key file", func(c *cluster.Config) { c.KeyFile = "/k" }, "KeyFile"},
		{"empty label", func(c *cluster.Config) { c.Label = "" }, "Label"},
		{"long label", func(c *cluster.Config) { c.Label = strings.Repeat("x", 256) }, "Label"},
		{"unknown profile", func(c *cluster.Config) { c.Profile = "fast" }, "Profile"},
		{"bind host name", func(c *cluster.Config) { c.BindAddr = "localhost:7946" }, "BindAddr"},
		{"bind without port", func(c *cluster.Config) { c.BindAddr = "0.0.0.0" }, "BindAddr"},
		{"advertise bad", func(c *cluster.Config) { c.AdvertiseAddr = "x" }, "AdvertiseAddr"},
		{"join without port", func(c *cluster.Config) { c.Join = []string{"seed"} }, "Join[0]"},
		{"join with a named port", func(c *cluster.Config) { c.Join = []string{"seed:7946", "seed:gossip"} }, "Join[1]"},
		{"join without host", func(c *cluster.Config) { c.Join = []string{":7946"} }, "Join[0]"},
		{"no role", func(c *cluster.Config) { c.Meta.Role = "" }, "Meta.Role"},
		{"no id", func(c *cluster.Config) { c.Meta.ID = "" }, "Meta.ID"},
		{"exit without pool", func(c *cluster.Config) { c.Meta.Pool = "" }, "Meta.Pool"},
		{"exit without proxy addr", func(c *cluster.Config) { c.Meta.ProxyAddr = "" }, "Meta.ProxyAddr"},
		{"negative weight", func(c *cluster.Config) { c.Meta.Weight = -1 }, "Meta.Weight"},
		{"field too long", func(c *cluster.Config) { c.Meta.City = strings.Repeat("c", 256) }, "Meta.City"},
		{"meta over 512 bytes", func(c *cluster.Config) {
			c.Meta.City, c.Meta.Version, c.Meta.DC = strings.Repeat("c", 250), strings.Repeat("v", 200), strings.Repeat("d", 60)
		}, "largest field Meta.City"},
		{"gateway with egress", func(c *cluster.Config) { c.Meta = gatewayMeta("gw"); c.Egress = exitEgress(1) }, "Egress"},
		{"invalid egress", func(c *cluster.Config) { c.Egress = []netip.Addr{{}} }, "Egress[0]"},
		{"zero rejoin interval", func(c *cluster.Config) { c.RejoinInterval = 0 }, "RejoinInterval"},
		{"zero reconnect timeout", func(c *cluster.Config) { c.ReconnectTimeout = 0 }, "ReconnectTimeout"},
		{"zero resolve attempts", func(c *cluster.Config) { c.ResolveAttempts = 0 }, "ResolveAttempts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := good()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.field != "" && err == nil:
				t.Fatalf("Validate: no error, want one naming %s", tc.field)
			case tc.field != "" && !strings.Contains(err.Error(), tc.field):
				t.Fatalf("Validate: %q does not name %s", err, tc.field)
			}
		})
	}
}

func TestNewRefusesBadKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := dir + "/bad.keys"
	writeKeys(t, bad)
	tests := []struct{ name, file, want string }{
		{"missing file", dir + "/none", "KeyFile"},
		{"no key in file", bad, "no key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := cluster.LocalConfig()
			cfg.Meta, cfg.KeyFile = gatewayMeta("gw"), tc.file
			if _, err := cluster.New(cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// A gossip port another process holds is ErrAddrInUse, so the command can
// name its flag.
func TestTakenBindAddrIsErrAddrInUse(t *testing.T) {
	t.Parallel()
	first := startNode(t, gatewayMeta("gw-a"), nil)
	cfg := cluster.LocalConfig()
	cfg.Keys = [][]byte{key(1)}
	cfg.Meta = gatewayMeta("gw-b")
	cfg.Logger = testLogger()
	cfg.BindAddr = first.Addr()
	c, err := cluster.New(cfg, nil)
	if err == nil {
		c.Shutdown()
		t.Fatalf("second node on %s started", first.Addr())
	}
	if !errors.Is(err, cluster.ErrAddrInUse) || !strings.Contains(err.Error(), first.Addr()) {
		t.Fatalf("err = %v, want ErrAddrInUse naming %s", err, first.Addr())
	}
}
