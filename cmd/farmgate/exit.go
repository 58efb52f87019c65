package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/farmgate/farmgate/cluster"
	"github.com/farmgate/farmgate/exitnode"
	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
	"github.com/farmgate/farmgate/internal/dataplane/sockopt"
)

// exitSettings is everything `farmgate exit` reads from flags, environment
// and config file, validated.
type exitSettings struct {
	listen    string
	advertise string // host:port gateways dial; default the listen address
	weight    int
	admin     string // operator listener; "" for none
	adminTok  string // its bearer token; "" for loopback only
	cfg       exitnode.Config
	drain     time.Duration
	gossip    gossipSettings
	links     linkSettings
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
	dialTimeout := fs.Duration("dial-timeout", d.DialTimeout, "destination dial timeout, and how long a forwarded request waits for the answer to start (keep it below the gateways' exit-reply-timeout)")
	idle := fs.Duration("idle-timeout", d.IdleTimeout, "idle tunnel timeout")
	readHeader := fs.Duration("read-header-timeout", d.ReadHeaderTimeout, "request header read timeout")
	drain := fs.Duration("drain-timeout", drainTimeout, "on SIGTERM, how long live tunnels may finish")
	advertise := fs.String("advertise", "", "host:port gateways reach this exit's proxy at (gossip); default the --listen address")
	weight := fs.Int("weight", 1, "share of traffic for the weighted policy (gossip)")
	adminAddr := fs.String("admin", "", "operator listener (/metrics, /healthz, /readyz, /api/exit, /api/cluster), e.g. 127.0.0.1:9091; empty: none")
	adminToken := fs.String("admin-token-file", "", "file holding the bearer token the admin listener requires from non-loopback clients")
	gossip := gossipFlags(fs)
	links := linkFlags(fs)
	return func() (exitSettings, error) {
		s := exitSettings{listen: *listen, advertise: *advertise, cfg: d, drain: *drain, weight: *weight, admin: *adminAddr}
		var err error
		if *adminToken != "" {
			if s.adminTok, err = readTokenFlag("admin-token-file", *adminToken); err != nil {
				return s, err
			}
		}
		if s.gossip, err = gossip(*listen); err != nil {
			return s, err
		}
		if s.gossip.enabled() && *pool == "" {
			return s, usageError{errors.New("--pool: required with gossip (--join or --gossip-listen): the IP pool this exit serves, the customers' zone, e.g. resi")}
		}
		token, err := readToken(*tokenFile)
		if err != nil {
			return s, err
		}
		if *weight < 1 {
			return s, usageError{fmt.Errorf("--weight: want ≥ 1, got %d", *weight)}
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
		if s.links, err = links(farmtls.RoleExit, c.ID); err != nil {
			return s, err
		}
		return s, nil
	}
}

func runExit(ctx context.Context, args []string, logger *slog.Logger) error {
	fs := newExitFlagSet()
	read := exitFlags(fs)
	warnUnknownEnv(fs, logger)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	s, err := read()
	if err != nil {
		return err
	}
	cfg := s.cfg
	if err := checkEgress(cfg.Egress); err != nil {
		return err
	}
	srv, err := exitnode.New(cfg, logger)
	if err != nil {
		return usageError{err}
	}
	certs, err := loadLinkTLS(s.links, logger)
	if err != nil {
		return err
	}
	ln, err := sockopt.Listen(context.Background(), s.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	links := "plaintext"
	if certs != nil {
		// Each handshake takes the certificate in use: a reload applies to
		// the next link, and the links up keep theirs.
		ln = tls.NewListener(ln, certs.ServerConfig())
		links = "mtls"
		wctx, stopWatch := context.WithCancel(context.Background())
		watched := make(chan struct{})
		go func() { defer close(watched); certs.Watch(wctx) }()
		defer func() {
			stopWatch()
			<-watched
		}()
	}
	// SIGHUP reloads from the moment the exit says it serves: a reload
	// that came before the handler would kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	logger.Info("exit serving", "id", cfg.ID, "listen", ln.Addr().String(), "links", links, "dc", cfg.DC, "pool", cfg.Pool, "country", cfg.Country, "egress_ips", len(cfg.Egress))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	var node *cluster.Cluster
	if s.gossip.enabled() {
		proxyAddr := s.advertise
		if proxyAddr == "" {
			proxyAddr = ln.Addr().String()
		}
		meta := cluster.Meta{Role: cluster.RoleExit, ID: cfg.ID, DC: cfg.DC, Pool: cfg.Pool, Country: cfg.Country, City: cfg.City,
			Weight: s.weight, Capacity: cfg.MaxTunnels, ProxyAddr: proxyAddr, Version: version}
		ccfg := s.gossip.config(meta, logger)
		ccfg.Egress = cfg.Egress
		if node, err = cluster.New(ccfg, nil); err != nil {
			srv.Shutdown(context.Background())
			return s.gossip.startError(err)
		}
		if s.advertise == "" && unspecifiedHost(proxyAddr) {
			// Listening on every address: gateways reach the proxy at the
			// address the gossip advertises.
			gossipHost, _, _ := net.SplitHostPort(node.Addr())
			_, port, _ := net.SplitHostPort(proxyAddr)
			if err := node.UpdateMeta(func(m *cluster.Meta) { m.ProxyAddr = net.JoinHostPort(gossipHost, port) }); err != nil {
				logger.Warn("advertise proxy address", "err", err)
			}
		}
		s.gossip.logStarted(logger, "exit", node, ccfg, "id", cfg.ID)
	}
	var adminSrv *http.Server
	if s.admin != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), srv.Collector())
		acfg := exitnode.AdminConfig{Gatherer: reg, Token: s.adminTok}
		if node != nil {
			reg.MustRegister(node.Collector())
			acfg.Members = func() any { return node.Members() }
		}
		aln, err := net.Listen("tcp", s.admin)
		if err != nil {
			srv.Shutdown(context.Background())
			if node != nil {
				node.Shutdown()
			}
			return usageError{fmt.Errorf("--admin: %w", err)}
		}
		adminSrv = &http.Server{Handler: srv.AdminHandler(acfg), ReadHeaderTimeout: 5 * time.Second}
		go adminSrv.Serve(aln) // owned here: Shutdown below ends it
		logger.Info("exit admin serving", "admin", aln.Addr().String())
	}
wait:
	for {
		select {
		case err := <-errc:
			if adminSrv != nil {
				adminSrv.Close()
			}
			if node != nil {
				node.Shutdown()
			}
			return err
		case <-ctx.Done():
			break wait
		case <-hup:
			if certs != nil {
				if err := certs.Reload(); err != nil {
					logger.Error("reload tls files failed, keeping the old certificate", "err", err)
				}
			}
			if node != nil {
				if err := node.ReloadKeys(); err != nil {
					logger.Error("reload gossip keys failed, keeping the old ones", "err", err)
				} else {
					logger.Info("gossip keys reloaded")
				}
			}
		}
	}
	// Graceful stop: tell every gateway we drain, let live tunnels finish,
	// then leave the farm.
	if node != nil {
		if err := node.SetDraining(true); err != nil {
			logger.Warn("announce drain", "err", err)
		}
	}
	logger.Info("exit draining", "id", cfg.ID, "active_tunnels", srv.ActiveTunnels(), "deadline", s.drain.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.drain)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-errc
	if adminSrv != nil {
		adminSrv.Shutdown(sctx)
	}
	if node != nil {
		node.Leave(5 * time.Second)
		node.Shutdown()
	}
	logger.Info("exit stopped", "id", cfg.ID, "err", err)
	return nil
}

func newExitFlagSet() *flag.FlagSet { return flag.NewFlagSet("exit", flag.ContinueOnError) }

// unspecifiedHost reports whether addr's host is empty, 0.0.0.0 or ::.
func unspecifiedHost(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "" || ip != nil && ip.IsUnspecified()
}
