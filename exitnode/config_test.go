package exitnode_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*exitnode.Config)
		wantErr string // substring; "" = valid
	}{
		{"valid", func(*exitnode.Config) {}, ""},
		{"zero timeouts mean default", func(c *exitnode.Config) { c.DialTimeout, c.MaxTunnels = 0, 0 }, ""},
		{"no id", func(c *exitnode.Config) { c.ID = "" }, "exit config: id: required"},
		{"no token", func(c *exitnode.Config) { c.Token = "" }, "exit config: token: required"},
		{"bad country", func(c *exitnode.Config) { c.Country = "deu" }, "exit config: country:"},
		{"non-letter country", func(c *exitnode.Config) { c.Country = "d1" }, "exit config: country:"},
		{"invalid egress", func(c *exitnode.Config) { c.Egress = []netip.Addr{{}} }, "exit config: egress[0]"},
		{"duplicate egress", func(c *exitnode.Config) {
			c.Egress = []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::ffff:127.0.0.2")}
		}, "exit config: egress[1]"},
		{"unspecified egress", func(c *exitnode.Config) { c.Egress = []netip.Addr{netip.MustParseAddr("0.0.0.0")} }, "exit config: egress[0]"},
		{"invalid allow", func(c *exitnode.Config) { c.AllowDest = []netip.Prefix{{}} }, "exit config: allow_dest[0]"},
		{"negative max", func(c *exitnode.Config) { c.MaxTunnels = -1 }, "exit config: max_tunnels"},
		{"negative idle", func(c *exitnode.Config) { c.IdleTimeout = -time.Second }, "exit config: idle_timeout"},
		{"negative dial", func(c *exitnode.Config) { c.DialTimeout = -time.Second }, "exit config: dial_timeout"},
		{"negative header", func(c *exitnode.Config) { c.ReadHeaderTimeout = -time.Second }, "exit config: read_header_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig()
			tc.mutate(&cfg)
			err := cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
			if _, err := exitnode.New(cfg, nil); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

func TestDefaultConfig(t *testing.T) {
	t.Parallel()
	c := exitnode.DefaultConfig()
	if c.MaxTunnels != 10000 || c.ReadHeaderTimeout != 10*time.Second ||
		c.DialTimeout != 10*time.Second || c.IdleTimeout != 5*time.Minute {
		t.Fatalf("DefaultConfig() = %+v", c)
	}
}

func TestInfoUpperCasesCountry(t *testing.T) {
	t.Parallel()
	s, err := exitnode.New(testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	info := s.Info()
	if info.Country != "DE" || info.ID != "t-1" || info.MaxTunnels != 10000 || len(info.Egress) != 4 || info.Version != exitnode.Version {
		t.Fatalf("Info() = %+v", info)
	}
}
