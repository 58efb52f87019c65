package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/farmgate/farmgate/exitnode"
)

// exitSettings is everything `farmgate exit` reads from flags, environment
// and config file, validated.
type exitSettings struct {
	listen string
	cfg    exitnode.Config
	drain  time.Duration
}

// exitFlags declares the exit's flags on fs; the returned func reads them
// after parsing.
func exitFlags(fs *flag.FlagSet) func() (exitSettings, error) {
	d := exitnode.DefaultConfig()
	listen := fs.String("listen", "127.0.0.1:3128", "address gateways connect to")
	id := fs.String("id", "", "exit id, unique in the farm (required)")
	dc := fs.String("dc", "", "datacenter of this exit")
	pool := fs.String("pool", "", "IP pool this exit serves (the customers' zone)")
	country := fs.String("country", "", "ISO 3166 alpha-2 country of the egress IPs")
	city := fs.String("city", "", "city of the egress IPs")
	egress := fs.String("egress", "", "egress IPs to bind outgoing connections to, comma-separated; empty: the OS picks")
	tokenFile := fs.String("token-file", "", "file holding the gateway↔exit token (required)")
	allow := fs.String("allow-dest", "", "destination CIDRs allowed despite the private/loopback/metadata deny list, comma-separated")
	maxTunnels := fs.Int("max-tunnels", d.MaxTunnels, "concurrent tunnels and requests")
	dialTimeout := fs.Duration("dial-timeout", d.DialTimeout, "destination dial timeout")
	idle := fs.Duration("idle-timeout", d.IdleTimeout, "idle tunnel timeout")
	readHeader := fs.Duration("read-header-timeout", d.ReadHeaderTimeout, "request header read timeout")
	drain := fs.Duration("drain-timeout", drainTimeout, "on SIGTERM, how long live tunnels may finish")
	return func() (exitSettings, error) {
		s := exitSettings{listen: *listen, cfg: d, drain: *drain}
		token, err := readToken(*tokenFile)
		if err != nil {
			return s, err
		}
		c := &s.cfg
		c.ID, c.DC, c.Pool, c.Country, c.City = *id, *dc, *pool, *country, *city
		c.Token = token
		if c.Egress, err = csvAddrs("egress", *egress); err != nil {
			return s, err
		}
		if c.AllowDest, err = csvPrefixes("allow-dest", *allow); err != nil {
			return s, err
		}
		c.MaxTunnels, c.DialTimeout, c.IdleTimeout, c.ReadHeaderTimeout = *maxTunnels, *dialTimeout, *idle, *readHeader
		if err := c.Validate(); err != nil {
			return s, usageError{err}
		}
		return s, nil
	}
}

func runExit(ctx context.Context, args []string, logger *slog.Logger) error {
	fs := newExitFlagSet()
	read := exitFlags(fs)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := read()
	if err != nil {
		return err
	}
	cfg := s.cfg
	srv, err := exitnode.New(cfg, logger)
	if err != nil {
		return usageError{err}
	}
	ln, err := net.Listen("tcp", s.listen)
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
	logger.Info("exit draining", "id", cfg.ID, "active_tunnels", srv.ActiveTunnels(), "deadline", s.drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.drain)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-errc
	logger.Info("exit stopped", "id", cfg.ID, "err", err)
	return nil
}

func newExitFlagSet() *flag.FlagSet { return flag.NewFlagSet("exit", flag.ContinueOnError) }
