package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"

	"github.com/farmgate/farmgate/exitnode"
)

func runExit(ctx context.Context, args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("exit", flag.ContinueOnError)
	d := exitnode.DefaultConfig()
	listen := fs.String("listen", "127.0.0.1:3128", "address gateways connect to")
	id := fs.String("id", "", "exit id (required)")
	dc := fs.String("dc", "", "datacenter of this exit")
	pool := fs.String("pool", "", "IP pool this exit serves")
	country := fs.String("country", "", "ISO 3166 alpha-2 country of the egress IPs")
	city := fs.String("city", "", "city of the egress IPs")
	egress := fs.String("egress", "", "egress IPs to bind outgoing connections to, comma-separated")
	tokenFile := fs.String("token-file", "", "file holding the gateway↔exit token (required)")
	allow := fs.String("allow-dest", "", "destination CIDRs allowed despite the private/loopback deny list, comma-separated")
	maxTunnels := fs.Int("max-tunnels", d.MaxTunnels, "concurrent tunnels and requests")
	dialTimeout := fs.Duration("dial-timeout", d.DialTimeout, "destination dial timeout")
	idle := fs.Duration("idle-timeout", d.IdleTimeout, "idle tunnel timeout")
	readHeader := fs.Duration("read-header-timeout", d.ReadHeaderTimeout, "request header read timeout")
	drain := fs.Duration("drain-timeout", drainTimeout, "on SIGTERM, how long live tunnels may finish")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	cfg := d
	cfg.ID, cfg.DC, cfg.Pool, cfg.Country, cfg.City = *id, *dc, *pool, *country, *city
	cfg.Token = token
	if cfg.Egress, err = csvAddrs("egress", *egress); err != nil {
		return err
	}
	if cfg.AllowDest, err = csvPrefixes("allow-dest", *allow); err != nil {
		return err
	}
	cfg.MaxTunnels, cfg.DialTimeout, cfg.IdleTimeout, cfg.ReadHeaderTimeout = *maxTunnels, *dialTimeout, *idle, *readHeader
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	srv, err := exitnode.New(cfg, logger)
	if err != nil {
		return usageError{err}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	logger.Info("exit serving", "id", cfg.ID, "listen", ln.Addr().String(), "dc", cfg.DC, "pool", cfg.Pool, "country", cfg.Country, "egress_ips", len(cfg.Egress))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("exit draining", "id", cfg.ID, "active_tunnels", srv.ActiveTunnels(), "deadline", drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-errc
	logger.Info("exit stopped", "id", cfg.ID, "err", err)
	return nil
}
