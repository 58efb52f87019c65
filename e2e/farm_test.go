package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/gateway"
)

// startFarm starts the demo farm on free loopback ports for one test.
func startFarm(t testing.TB, mod func(*demo.Config)) *demo.Farm {
	t.Helper()
	needCurl(t)
	cfg := demo.Config{Listen: "127.0.0.1:0", Origin: "127.0.0.1:0"}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.Gateway = gateway.DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	f, err := demo.Start(cfg)
	if err != nil {
		t.Fatalf("start farm: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.Shutdown(ctx)
	})
	return f
}

func proxyURL(f *demo.Farm, user string) string {
	return fmt.Sprintf("http://%s:demo@%s", user, f.GatewayAddr)
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
