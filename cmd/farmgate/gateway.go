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
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cluster"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/gateway/admin"
	"github.com/farmgate/farmgate/internal/dataplane/farmtls"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/static"
	"github.com/farmgate/farmgate/upstream"
)

// upstreamConfig is a third-party upstream in the gateway's YAML config.
type upstreamConfig struct {
	ID      string `yaml:"id"`
	URL     string `yaml:"url"` // http://, https:// or socks5://user:pass@host:port
	DC      string `yaml:"dc"`
	Pool    string `yaml:"pool"`
	Country string `yaml:"country"`
	City    string `yaml:"city"`
	Weight  int    `yaml:"weight"`
}

// gatewaySettings is everything `farmgate gateway` reads from its flags,
// environment and config file, validated.
type gatewaySettings struct {
	listen, admin, adminTokenFile string
	dc                            string
	customersFile                 string
	token                         string
	static                        []static.Exit
	upstreams                     []pool.Exit
	policy                        string
	policies                      map[string]string
	probeURL                      string
	gw                            gateway.Config
	drain                         time.Duration
	accessLog                     string
	redisAddrs, redisURL          string
	redisPrefix                   string
	gossip                        gossipSettings
	links                         linkSettings
	proxyCert, proxyKey           string // the customer port's TLS, when set
}

// gatewayFlags declares the gateway's flags on fs; the returned func reads
// them (and the YAML-only keys) into settings after parsing.
func gatewayFlags(fs *flag.FlagSet) func(extra map[string]*yaml.Node) (gatewaySettings, error) {
	d := gateway.DefaultConfig()
	listen := fs.String("listen", "127.0.0.1:8080", "customer listener: HTTP CONNECT, absolute-form HTTP and SOCKS5 on one port")
	adminAddr := fs.String("admin", "127.0.0.1:9090", "operator listener (JSON API, /metrics, dashboard); empty disables it")
	adminToken := fs.String("admin-token-file", "", "file holding the bearer token the admin API requires from non-loopback clients")
	dc := fs.String("dc", "", "datacenter of this gateway; its exits are preferred")
	customers := fs.String("customers", "", "YAML customer file (required unless --redis or --redis-url; reloaded on SIGHUP)")
	redisAddrs := fs.String("redis", "", "Redis address(es), comma-separated (several: Cluster or Sentinel): customers, limits, usage and sticky sessions are shared there")
	redisURL := fs.String("redis-url", "", "Redis URL, redis://[user:pass@]host:port/db, instead of --redis")
	redisPrefix := fs.String("redis-prefix", auth.DefaultPrefix, "prefix of every Redis key, to share one Redis between farms")
	tokenFile := fs.String("token-file", "", "file holding the gateway↔exit token (required)")
	var exits listFlag
	fs.Var(&exits, "exit", "a farmgate exit as ID=HOST:PORT (repeatable; reloaded on SIGHUP)")
	policy := fs.String("policy", pool.DefaultConfig().DefaultPolicy, "exit selection policy: round_robin, weighted, least_conn, least_latency, random (reloaded on SIGHUP)")
	probeURL := fs.String("probe-url", "", "URL the health checks also fetch through each exit; empty: farmgate exits are asked whether they can serve, third-party upstreams get a TCP connect")
	readHeader := fs.Duration("read-header-timeout", d.ReadHeaderTimeout, "customer request header timeout")
	exitDial := fs.Duration("exit-dial-timeout", d.ExitDialTimeout, "TCP connect timeout to an exit")
	exitReply := fs.Duration("exit-reply-timeout", d.ExitReplyTimeout, "wait for an exit's reply to CONNECT or a request")
	idle := fs.Duration("idle-timeout", d.IdleTimeout, "how long a tunnel, a forwarded request or a kept-alive customer connection may move no byte either way")
	fin := fs.Duration("fin-timeout", d.FinTimeout, "how long a half-closed tunnel may stay silent")
	attempts := fs.Int("max-attempts", d.MaxAttempts, "exits a request may try before the customer gets an error")
	maxIdle := fs.Int("max-idle-exit-conns", d.MaxIdleExitConns, "idle connections kept to each exit: keep-alive ones for requests, links for tunnels, and tunnels to origins for http:// requests")
	drain := fs.Duration("drain-timeout", drainTimeout, "on SIGTERM, how long live tunnels may finish")
	accessLog := fs.String("access-log", "off", "access log on stdout: off, json or text")
	metricsCustomers := fs.Int("metrics-customers", 0, "customers, the top ones by traffic through this gateway, given their own farmgate_customer_* series on /metrics; the rest are summed as customer=\"other\"; 0: no per-customer series")
	gossip := gossipFlags(fs)
	links := linkFlags(fs)
	proxyTLS := proxyTLSFlags(fs)
	return func(extra map[string]*yaml.Node) (gatewaySettings, error) {
		s := gatewaySettings{
			listen: *listen, admin: *adminAddr, adminTokenFile: *adminToken, dc: strings.ToLower(*dc),
			customersFile: *customers, policy: *policy, probeURL: *probeURL, drain: *drain, accessLog: *accessLog,
			redisAddrs: *redisAddrs, redisURL: *redisURL, redisPrefix: *redisPrefix,
		}
		var err error
		if s.token, err = readToken(*tokenFile); err != nil {
			return s, err
		}
		if s.gossip, err = gossip(*listen); err != nil {
			return s, err
		}
		if s.proxyCert, s.proxyKey, err = proxyTLS(); err != nil {
			return s, err
		}
		if s.customersFile == "" && s.redisAddrs == "" && s.redisURL == "" {
			return s, usageError{errors.New("--customers: required (or --redis / --redis-url)")}
		}
		if s.customersFile != "" && s.redisAddrs == "" && s.redisURL == "" {
			if _, err := os.Stat(s.customersFile); err != nil {
				return s, usageError{fmt.Errorf("--customers: %w", err)}
			}
		}
		for _, e := range exits {
			se, err := static.Parse(e)
			if err != nil {
				return s, usageError{fmt.Errorf("--exit: %w", err)}
			}
			s.static = append(s.static, se)
		}
		if n := extra["exits"]; n != nil {
			var ups []upstreamConfig
			if err := decodeStrict(n, &ups); err != nil {
				return s, usageError{fmt.Errorf("config: exits: %w", err)}
			}
			for i, u := range ups {
				if u.ID == "" || u.URL == "" || u.Pool == "" {
					return s, usageError{fmt.Errorf("config: exits[%d]: id, url and pool are required", i)}
				}
				s.upstreams = append(s.upstreams, pool.Exit{ID: u.ID, Addr: u.URL, DC: strings.ToLower(u.DC), Pool: strings.ToLower(u.Pool),
					Country: strings.ToUpper(u.Country), City: strings.ToLower(u.City), Weight: u.Weight})
			}
		}
		if len(s.static) == 0 && len(s.upstreams) == 0 && !s.gossip.enabled() {
			return s, usageError{errors.New("--exit: name at least one exit (or exits: in the config, or join the farm's gossip with --join)")}
		}
		if n := extra["policies"]; n != nil {
			if err := decodeStrict(n, &s.policies); err != nil {
				return s, usageError{fmt.Errorf("config: policies: %w", err)}
			}
		}
		pc := pool.DefaultConfig()
		pc.DefaultPolicy, pc.Policies = s.policy, s.policies
		if err := pc.Validate(); err != nil {
			return s, usageError{fmt.Errorf("--policy/policies: %w", err)}
		}
		s.gw = d
		s.gw.DC, s.gw.ExitToken = s.dc, s.token
		s.gw.ReadHeaderTimeout, s.gw.ExitDialTimeout, s.gw.ExitReplyTimeout = *readHeader, *exitDial, *exitReply
		s.gw.IdleTimeout, s.gw.FinTimeout, s.gw.MaxAttempts = *idle, *fin, *attempts
		if *maxIdle < 1 {
			return s, usageError{fmt.Errorf("--max-idle-exit-conns: want at least 1, got %d", *maxIdle)}
		}
		s.gw.MaxIdleExitConns = *maxIdle
		if *metricsCustomers < 0 || *metricsCustomers > 1000 {
			return s, usageError{fmt.Errorf("--metrics-customers: want 0 (no per-customer series) to 1000, got %d", *metricsCustomers)}
		}
		s.gw.MetricsCustomers = *metricsCustomers
		if err := s.gw.Validate(); err != nil {
			return s, usageError{err}
		}
		if _, err := newAccessLog(s.accessLog, nil); err != nil {
			return s, err
		}
		// Any gateway certificate of the farm will do: exits check that
		// it is a gateway's, not which one.
		if s.links, err = links(farmtls.RoleGateway, ""); err != nil {
			return s, err
		}
		return s, nil
	}
}

// yaml-only keys of the gateway's config file.
var gatewayExtraKeys = []string{"exits", "policies"}

func loadGatewaySettings(args []string) (gatewaySettings, error) {
	fs := newGatewayFlagSet()
	read := gatewayFlags(fs)
	extra, err := parseFlags(fs, args, gatewayExtraKeys...)
	if err != nil {
		return gatewaySettings{}, err
	}
	return read(extra)
}

func newGatewayFlagSet() *flag.FlagSet { return flag.NewFlagSet("gateway", flag.ContinueOnError) }

func runGateway(ctx context.Context, args []string, logger *slog.Logger) error {
	fs := newGatewayFlagSet()
	gatewayFlags(fs)
	warnUnknownEnv(fs, logger)
	s, err := loadGatewaySettings(args)
	if err != nil {
		return err
	}
	certs, err := loadLinkTLS(s.links, logger)
	if err != nil {
		return err
	}
	// exitTLS is how the gateway dials the exit of an id: over mutual TLS
	// naming that exit, or plaintext (nil).
	var exitTLS func(id string) *tls.Config
	if certs != nil {
		exitTLS = certs.ClientConfig
	}
	reg := prometheus.NewRegistry()
	logins := admin.NewLoginCounters(reg)
	be, err := openBackends(ctx, s, logger, logins)
	if err != nil {
		return err
	}
	defer be.close()
	// The customer store in use: a reload of the customer file replaces it.
	var store atomic.Pointer[customerStore]
	store.Store(&be.store)
	var adminToken string
	if s.adminTokenFile != "" {
		if adminToken, err = readTokenFlag("admin-token-file", s.adminTokenFile); err != nil {
			return err
		}
	}

	pcfg := pool.DefaultConfig()
	pcfg.LocalDC = s.dc
	pcfg.DefaultPolicy, pcfg.Policies = s.policy, s.policies
	pcfg.Sessions = be.sessions
	var gw *gateway.Gateway
	probeURL := s.probeURL // "" checks the exits without a request through them
	pcfg.Probe = func(ctx context.Context, e *pool.Exit) error { return gw.CheckExit(ctx, e, probeURL) }
	p, err := pool.New(pcfg, logger)
	if err != nil {
		return usageError{err}
	}
	for _, u := range s.upstreams {
		p.Upsert(u)
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), admin.NewPoolCollector(p))
	if be.breaker != nil {
		reg.MustRegister(be.breaker.Collector())
	}
	gcfg := s.gw
	gcfg.Metrics = reg
	gcfg.AccessLog, _ = newAccessLog(s.accessLog, os.Stdout)
	gcfg.Meter, gcfg.Limiter = be.meter, be.limiter
	gcfg.ExitTLS = exitTLS
	var pcert *proxyCert
	if s.proxyCert != "" {
		if pcert, err = loadProxyCert(s.proxyCert, s.proxyKey); err != nil {
			return err
		}
		gcfg.CustomerTLS = pcert.config()
	}
	if gw, err = gateway.New(gcfg, be.store, p, logger); err != nil {
		return usageError{err}
	}
	ln, err := gateway.Listen(s.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(runCtx) }()
	links := "plaintext"
	if certs != nil {
		// Each handshake takes the certificate in use: a rotation applies
		// to the next link, and the links up keep theirs.
		links = "mtls"
		wg.Add(1)
		go func() { defer wg.Done(); certs.Watch(runCtx) }()
	}
	// learn asks the --exit exits about themselves until each answers; a
	// reload starts it over with the new list, so an exit the reload
	// dropped is not added once it answers.
	stopLearning := func() {}
	learn := func(exits []static.Exit) {
		stopLearning()
		lctx, lcancel := context.WithCancel(runCtx)
		stopLearning = lcancel
		wg.Add(1)
		go func() { defer wg.Done(); static.Learn(lctx, p, exits, s.token, exitTLS, logger) }()
	}
	learn(s.static)
	if rs, ok := be.store.(*auth.RedisStore); ok {
		// A customer disabled or deleted in Redis loses their live
		// tunnels too, on every gateway.
		gw.FollowRevocations(rs)
	}
	for _, loop := range be.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := loop(runCtx); err != nil && runCtx.Err() == nil {
				logger.Error("background loop stopped", "err", err)
			}
		}()
	}

	var node *cluster.Cluster
	drainFn, members := p.Drain, func() any { return []any{} }
	if s.gossip.enabled() {
		meta := cluster.Meta{Role: cluster.RoleGateway, ID: gatewayID(s), DC: s.dc, Version: version}
		ccfg := s.gossip.config(meta, logger)
		token := s.token
		// An exit's egress IPs come from the exit itself, like for --exit.
		ccfg.Resolve = func(ctx context.Context, m cluster.Meta) ([]netip.Addr, error) {
			var tc *tls.Config
			if exitTLS != nil {
				tc = exitTLS(m.ID)
			}
			info, err := upstream.FetchInfo(ctx, m.ProxyAddr, token, tc)
			return info.Egress, err
		}
		if node, err = cluster.New(ccfg, p); err != nil {
			ln.Close()
			return s.gossip.startError(err)
		}
		defer node.Shutdown()
		reg.MustRegister(node.Collector())
		drainFn = node.DrainExit
		members = func() any { return node.Members() }
		s.gossip.logStarted(logger, "gateway", node, ccfg)
	}

	// stopping turns /readyz to 503 for the drain, so load balancers send
	// new customers to other gateways while live tunnels finish here.
	var stopping atomic.Bool
	var adminSrv *http.Server
	if s.admin != "" {
		aln, err := net.Listen("tcp", s.admin)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--admin: %w", err)
		}
		adminSrv = &http.Server{Handler: admin.Handler(admin.Config{
			Pool: p, Gatherer: reg, Token: adminToken, Drain: drainFn, Members: members,
			Ready: func() error {
				if stopping.Load() {
					return errors.New("draining: the gateway is shutting down")
				}
				return nil
			},
			Usage: func(ctx context.Context, user string) (any, error) {
				if _, err := (*store.Load()).Get(ctx, user); errors.Is(err, auth.ErrUnknownCustomer) {
					return nil, fmt.Errorf("customer %s: %w", user, admin.ErrNotFound)
				}
				return be.meter.Usage(ctx, user)
			},
			Customers: func(ctx context.Context) ([]auth.CustomerRecord, error) { return (*store.Load()).List(ctx) },
			Activity:  gw.Activity,
		}), ReadHeaderTimeout: 5 * time.Second}
		go adminSrv.Serve(aln)
	}
	// SIGHUP reloads from the moment the gateway says it serves.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	logger.Info("gateway serving", "listen", ln.Addr().String(), "admin", s.admin, "links", links, "dc", s.dc, "exits", len(s.static)+len(s.upstreams))

	errc := make(chan error, 1)
	go func() { errc <- gw.Serve(ln) }()
	current := s
loop:
	for {
		select {
		case err = <-errc:
			break loop
		case <-ctx.Done():
			break loop
		case <-hup:
			if certs != nil {
				// The files named at start are re-read; new links use
				// them, the links up keep theirs.
				if err := certs.Reload(); err != nil {
					logger.Error("reload tls files failed, keeping the old certificate", "err", err)
				}
			}
			next, reloaded, err := reloadGateway(args, current, gw, p, logger, logins)
			if err != nil {
				logger.Error("reload failed, keeping the running configuration", "err", err)
				continue
			}
			if reloaded != nil {
				var cs customerStore = reloaded
				store.Store(&cs)
			}
			learn(next.static)
			reloadProxyCert(pcert, next, logger)
			current = next
			if node != nil {
				if err := node.ReloadKeys(); err != nil {
					logger.Error("reload gossip keys failed, keeping the old ones", "err", err)
				}
			}
		}
	}
	stopping.Store(true)
	logger.Info("gateway draining", "deadline", s.drain.String())
	sctx, scancel := context.WithTimeout(context.Background(), s.drain)
	defer scancel()
	serr := gw.Shutdown(sctx)
	if adminSrv != nil {
		adminSrv.Shutdown(sctx)
	}
	if node != nil {
		node.Leave(5 * time.Second)
	}
	// Tunnels are settled: write out every byte they were metered.
	if err := be.meter.Close(sctx); err != nil {
		logger.Error("flush usage", "err", err)
	}
	cancel()
	wg.Wait()
	logger.Info("gateway stopped", "err", serr)
	return err
}

// reloadGateway re-reads the configuration and the customer file and applies
// what can change live: customers, the exits the files name, selection
// policies. Nothing is applied unless everything is valid. The caller learns
// next.static afresh, and reads customers from store when it is not nil
// (the customer file read again).
func reloadGateway(args []string, cur gatewaySettings, gw *gateway.Gateway, p *pool.Pool, logger *slog.Logger, logins *admin.LoginCounters) (next gatewaySettings, store *auth.FileStore, err error) {
	next, err = loadGatewaySettings(args)
	if err != nil {
		return cur, nil, err
	}
	// Customers in Redis are live already; a customer file is read again.
	if cur.redisAddrs == "" && cur.redisURL == "" {
		if store, err = auth.LoadFileConfig(next.customersFile, authConfig(logger, logins)); err != nil {
			return cur, nil, fmt.Errorf("--customers: %w", err)
		}
	}
	if err := p.SetPolicies(next.policy, next.policies); err != nil {
		return cur, nil, err
	}
	if store != nil {
		gw.SetAuthenticator(store)
		if n := gw.CutRevoked(store.Allows); n > 0 {
			logger.Info("cut the tunnels of customers removed or disabled by the reload", "tunnels", n)
		}
	}

	// Only the exits the files define are the reload's to change: exits
	// that joined over gossip are the cluster's, and stay.
	keep := map[string]bool{}
	for _, u := range next.upstreams {
		keep[u.ID] = true
		p.Upsert(u)
	}
	for _, se := range next.static {
		keep[se.ID] = true
	}
	for _, id := range fileExitIDs(cur) {
		if !keep[id] {
			p.Remove(id)
		}
	}
	logger.Info("configuration reloaded", "customers", next.customersFile, "file_exits", len(keep), "policy", next.policy)
	return next, store, nil
}

// fileExitIDs lists the ids of the exits the configuration names (--exit
// and exits:), as opposed to those gossip finds.
func fileExitIDs(s gatewaySettings) []string {
	ids := make([]string, 0, len(s.static)+len(s.upstreams))
	for _, se := range s.static {
		ids = append(ids, se.ID)
	}
	for _, u := range s.upstreams {
		ids = append(ids, u.ID)
	}
	return ids
}

func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	return dec.Decode(v)
}

// gatewayID names this gateway in the cluster: its host and the address it
// gossips on, unique even with several gateways on one host.
func gatewayID(s gatewaySettings) string {
	host, _ := os.Hostname()
	addr := s.gossip.advertise
	if addr == "" {
		addr = s.gossip.listen
	}
	return "gw-" + host + "-" + addr
}
