package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cmd/farmgate/demo"
	"github.com/farmgate/farmgate/gateway/admin"
)

func runDemo(ctx context.Context, args []string, stdout io.Writer, logger *slog.Logger) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "customer listener of the demo gateway")
	adminAddr := fs.String("admin", "127.0.0.1:9090", "operator listener (JSON API)")
	origin := fs.String("origin", "127.0.0.1:8088", "demo origin (HTTP; TLS on the next port)")
	exits := fs.Int("exits", 4, "number of exits")
	insecure := fs.Bool("insecure-links", false, "plaintext gateway↔exit links; by default they are mutual TLS with a farm CA minted for the demo in a temporary directory")
	warnUnknownEnv(fs, logger)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *exits < 1 || *exits > 1000 {
		return usageError{fmt.Errorf("--exits: want 1..1000, got %d", *exits)}
	}
	farm, err := demo.Start(demo.Config{
		Listen: *listen,
		Origin: *origin,
		Exits:  demo.DefaultExits(*exits),
		Gossip: true,
		Logger: logger,
		// The secure path is the default one, in the demo too.
		InsecureLinks: *insecure,
	})
	if err != nil {
		return err
	}
	aln, err := net.Listen("tcp", *adminAddr)
	if err != nil {
		farm.Shutdown(context.Background())
		return fmt.Errorf("--admin: %w", err)
	}
	adminSrv := &http.Server{Handler: admin.Handler(admin.Config{
		Pool: farm.Pool, Gatherer: farm.Metrics, Drain: farm.DrainExit, Members: farm.Members,
		Usage: func(ctx context.Context, user string) (any, error) {
			if _, ok := farm.Customers.Customer(user); !ok {
				return nil, fmt.Errorf("customer %s: %w", user, admin.ErrNotFound)
			}
			return farm.Meter.Usage(ctx, user)
		},
		Customers: func(ctx context.Context) ([]auth.CustomerRecord, error) { return farm.Customers.List(ctx) },
	}), ReadHeaderTimeout: 5 * time.Second}
	go adminSrv.Serve(aln)

	gw, o := farm.GatewayAddr, farm.Origin
	links := "gateway↔exit links: mutual TLS, farm CA and node certificates in " + farm.TLSDir()
	if *insecure {
		links = "gateway↔exit links: PLAINTEXT (--insecure-links)"
	}
	fmt.Fprintf(stdout, `farmgate demo farm is up: gateway %s, %d exits found over gossip, origin %s (TLS %s), admin http://%s
%[6]s

Try it (customer "demo", password "demo"):
  curl -x http://demo:demo@%[1]s http://%[3]s/ip                      # rotates over the resi exits of DC eu
  curl -x http://demo-country-us:demo@%[1]s http://%[3]s/ip           # 127.0.3.x (us-1)
  curl -x http://demo-zone-dc:demo@%[1]s http://%[3]s/ip              # 127.0.4.x (us-2, pool dc)
  curl -x http://demo-session-s1:demo@%[1]s http://%[3]s/ip           # same IP every time
  curl -k -x http://demo-country-de:demo@%[1]s https://%[4]s/headers  # CONNECT + TLS
  curl -x socks5h://demo-country-fr:demo@%[1]s http://%[3]s/ip        # SOCKS5 on the same port
  curl http://%[5]s/api/exits                                         # the farm as JSON

Ctrl-C stops it.
`, gw, len(farm.Exits), o.HTTPAddr, o.TLSAddr, aln.Addr().String(), links)

	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping: draining tunnels")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adminSrv.Shutdown(sctx)
	return farm.Shutdown(sctx)
}
