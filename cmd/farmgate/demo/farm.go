// Package demo assembles a whole farm in one process: a demo origin, exit
// nodes on their own loopback ports with egress IPs in 127.0.0.0/8, and a
// gateway in front of them. `farmgate demo`, the end-to-end tests and the
// load tool all start the same farm.
package demo

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/cluster"
	"github.com/farmgate/farmgate/exitnode"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/gateway/admin"
	"github.com/farmgate/farmgate/internal/dataplane/sockopt"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// ExitSpec describes one demo exit.
type ExitSpec struct {
	ID, DC, Pool, Country, City string
	Egress                      []netip.Addr
}

// DefaultExits returns n exits: the four of the README first (eu-1, eu-2,
// us-1, us-2), then more spread over the same DCs, countries and pools.
func DefaultExits(n int) []ExitSpec {
	base := []ExitSpec{
		{ID: "eu-1", DC: "eu", Pool: "resi", Country: "DE"},
		{ID: "eu-2", DC: "eu", Pool: "resi", Country: "FR"},
		{ID: "us-1", DC: "us", Pool: "resi", Country: "US"},
		{ID: "us-2", DC: "us", Pool: "dc", Country: "US"},
	}
	specs := make([]ExitSpec, 0, n)
	for i := range n {
		s := base[i%len(base)]
		if i >= len(base) {
			s.ID = fmt.Sprintf("%s-%d", s.ID[:2], i+1)
		}
		// Exit i egresses from 127.<i/250>.<1+i%250>.1-4: eu-1 is 127.0.1.1-4.
		for k := range 4 {
			s.Egress = append(s.Egress, netip.AddrFrom4([4]byte{127, byte(i / 250), byte(1 + i%250), byte(1 + k)}))
		}
		specs = append(specs, s)
	}
	return specs
}

// DemoCustomers is the customer file of the demo.
const DemoCustomers = `customers:
  - user: demo
    password: demo
    pools: [resi, dc]
    default_pool: resi
`

// Config of a demo farm.
type Config struct {
	Listen string // gateway customer listener; default 127.0.0.1:8080
	Origin string // demo origin (HTTP; TLS on the next port); default 127.0.0.1:8088
	Exits  []ExitSpec
	// Customers is the YAML customer file content; default DemoCustomers.
	Customers string
	// Gateway settings; Gateway.ExitToken is generated when empty.
	Gateway gateway.Config
	// Pool settings; default pool.DefaultConfig with LocalDC "eu".
	Pool *pool.Config
	// Exit, if set, adjusts each exit's configuration.
	Exit func(*exitnode.Config)
	// NoProbes turns the active health probes off.
	NoProbes bool
	// Gossip makes the gateway discover the exits over a memberlist cluster
	// on loopback, as a real farm does, instead of asking each one.
	Gossip bool
	// InsecureLinks makes the gateway↔exit links plaintext. Default false:
	// mutual TLS 1.3, with a farm CA and node certificates minted for the
	// farm in a temporary directory (removed by Shutdown).
	InsecureLinks bool
	Logger        *slog.Logger
}

// Farm is a running demo farm.
type Farm struct {
	Origin      *Origin
	GatewayAddr string
	Gateway     *gateway.Gateway
	Pool        *pool.Pool
	Exits       []*Exit
	// Metrics holds the gateway's and the pool's Prometheus series.
	Metrics *prometheus.Registry
	// Meter counts the customers' traffic (in memory).
	Meter *auth.MemoryMeter
	// Customers is the customer store.
	Customers *auth.FileStore

	nodes   []*cluster.Cluster // gossip: the gateway's first, then one per exit
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	logger  *slog.Logger
	token   string
	exitMod func(*exitnode.Config) // Config.Exit
	links   *links                 // nil: plaintext links
}

// Exit is one running demo exit.
type Exit struct {
	Spec   ExitSpec
	Addr   string
	Server *exitnode.Server
	ln     net.Listener
}

// Start brings the whole farm up. Shutdown stops it.
func Start(cfg Config) (_ *Farm, err error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if cfg.Origin == "" {
		cfg.Origin = "127.0.0.1:8088"
	}
	if cfg.Exits == nil {
		cfg.Exits = DefaultExits(4)
	}
	if cfg.Customers == "" {
		cfg.Customers = DemoCustomers
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Gateway.ExitToken == "" {
		var b [16]byte
		rand.Read(b[:])
		cfg.Gateway.ExitToken = hex.EncodeToString(b[:])
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Farm{cancel: cancel, logger: logger, token: cfg.Gateway.ExitToken, exitMod: cfg.Exit}
	defer func() {
		if err != nil {
			f.Shutdown(context.Background())
		}
	}()

	if !cfg.InsecureLinks {
		if f.links, err = newLinks(); err != nil {
			return nil, err
		}
		if cfg.Gateway.ExitTLS == nil {
			cfg.Gateway.ExitTLS = f.links.gateway.ClientConfig
		}
	}
	if f.Origin, err = StartOrigin(cfg.Origin); err != nil {
		return nil, err
	}
	for _, spec := range cfg.Exits {
		if _, err := f.StartExit(spec); err != nil {
			return nil, err
		}
	}

	acfg := auth.DefaultConfig()
	acfg.Logger = logger
	store, err := auth.ParseFileConfig([]byte(cfg.Customers), "demo customers", acfg)
	if err != nil {
		return nil, err
	}
	f.Customers = store
	pcfg := pool.DefaultConfig()
	pcfg.LocalDC = "eu"
	if cfg.Pool != nil {
		pcfg = *cfg.Pool
	}
	if pcfg.Probe == nil && !cfg.NoProbes {
		// Every gateway checks every exit as `farmgate gateway` does, and
		// fetches the demo origin through it, as a customer would.
		probeURL := "http://" + f.Origin.HTTPAddr + "/ip"
		pcfg.Probe = func(ctx context.Context, e *pool.Exit) error {
			return f.Gateway.CheckExit(ctx, e, probeURL)
		}
	}
	f.Pool, err = pool.New(pcfg, logger)
	if err != nil {
		return nil, err
	}
	if cfg.Gossip {
		if err := f.startGossip(cfg.Exits); err != nil {
			return nil, err
		}
	} else {
		for _, e := range f.Exits {
			if err := f.learn(ctx, e); err != nil {
				return nil, err
			}
		}
	}
	// Limits and usage live in this process, as for any file-store gateway.
	meter, err := auth.NewMemoryMeter(auth.MeterConfig{Logger: logger})
	if err != nil {
		return nil, err
	}
	f.Meter = meter
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		meter.Run(ctx)
	}()
	if cfg.Gateway.Meter == nil {
		cfg.Gateway.Meter = meter
	}
	if cfg.Gateway.Limiter == nil {
		cfg.Gateway.Limiter = auth.NewMemoryLimiter(nil)
	}
	f.Metrics = prometheus.NewRegistry()
	f.Metrics.MustRegister(admin.NewPoolCollector(f.Pool))
	if cfg.Gateway.Metrics == nil {
		cfg.Gateway.Metrics = f.Metrics
	}
	f.Gateway, err = gateway.New(cfg.Gateway, store, f.Pool, logger)
	if err != nil {
		return nil, err
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.Pool.Run(ctx)
	}()
	ln, err := gateway.Listen(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen gateway %s: %w", cfg.Listen, err)
	}
	f.GatewayAddr = ln.Addr().String()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := f.Gateway.Serve(ln); err != nil {
			logger.Error("gateway stopped", "err", err)
		}
	}()
	return f, nil
}

// StartExit starts one more exit (its listener on a free loopback port) and,
// once the gateway runs, adds it to the pool.
func (f *Farm) StartExit(spec ExitSpec) (*Exit, error) {
	return f.startExitOn(spec, "127.0.0.1:0")
}

func (f *Farm) startExitOn(spec ExitSpec, addr string) (*Exit, error) {
	ecfg := exitnode.DefaultConfig()
	ecfg.ID, ecfg.DC, ecfg.Pool, ecfg.Country, ecfg.City = spec.ID, spec.DC, spec.Pool, spec.Country, spec.City
	ecfg.Egress = spec.Egress
	ecfg.Token = f.token
	// The demo's origin is on loopback; nothing else private is reachable.
	ecfg.AllowDest = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	if f.exitMod != nil {
		f.exitMod(&ecfg)
	}
	srv, err := exitnode.New(ecfg, f.logger)
	if err != nil {
		return nil, err
	}
	var tlsConf *tls.Config
	if f.links != nil {
		if tlsConf, err = f.links.exitServer(spec.ID); err != nil {
			return nil, err
		}
	}
	ln, err := sockopt.Listen(context.Background(), addr)
	if err != nil {
		return nil, fmt.Errorf("listen exit %s: %w", spec.ID, err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	e := &Exit{Spec: spec, Addr: ln.Addr().String(), Server: srv, ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		if err := srv.Serve(ln); err != nil {
			f.logger.Error("exit stopped", "exit", spec.ID, "err", err)
		}
	}()
	f.Exits = append(f.Exits, e)
	if f.Pool != nil && len(f.nodes) == 0 {
		if err := f.learn(context.Background(), e); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// learn asks the exit about itself, as a gateway started with --exit does.
func (f *Farm) learn(ctx context.Context, e *Exit) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := upstream.FetchInfo(ctx, e.Addr, f.token, f.ExitTLS(e.Spec.ID))
	if err != nil {
		return err
	}
	f.Pool.Upsert(upstream.ExitFromInfo(e.Spec.ID, upstream.SchemeFarmgate+"://"+e.Addr, info))
	return nil
}

// StopExit stops an exit abruptly (its tunnels are cut), as a crash would,
// but leaves it in the pool: health must notice.
func (f *Farm) StopExit(id string) error {
	for _, e := range f.Exits {
		if e.Spec.ID == id {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			e.Server.Shutdown(ctx)
			return nil
		}
	}
	return fmt.Errorf("stop exit %s: no such exit", id)
}

// RestartExit starts a stopped exit again on the same address.
func (f *Farm) RestartExit(id string) error {
	for i, e := range f.Exits {
		if e.Spec.ID == id {
			f.Exits = append(f.Exits[:i], f.Exits[i+1:]...)
			_, err := f.startExitOn(e.Spec, e.Addr)
			return err
		}
	}
	return fmt.Errorf("restart exit %s: no such exit", id)
}

// Token is the gateway↔exit token of this farm.
func (f *Farm) Token() string { return f.token }

// ExitTLS is the configuration with which the farm's gateway dials exit
// id, or nil when the links are plaintext.
func (f *Farm) ExitTLS(id string) *tls.Config {
	if f.links == nil {
		return nil
	}
	return f.links.gateway.ClientConfig(id)
}

// TLSDir is the directory of the farm's CA and node certificates, or ""
// when the links are plaintext.
func (f *Farm) TLSDir() string {
	if f.links == nil {
		return ""
	}
	return f.links.dir
}

// Shutdown stops the gateway (draining until ctx is done), the exits and the
// origin.
func (f *Farm) Shutdown(ctx context.Context) error {
	var errs []error
	if f.Gateway != nil {
		errs = append(errs, f.Gateway.Shutdown(ctx))
	}
	for _, e := range f.Exits {
		errs = append(errs, e.Server.Shutdown(ctx))
	}
	if f.Origin != nil {
		errs = append(errs, f.Origin.Shutdown(ctx))
	}
	for _, n := range f.nodes {
		n.Shutdown()
	}
	f.cancel()
	f.wg.Wait()
	if f.links != nil {
		f.links.close()
	}
	return errors.Join(errs...)
}

// startGossip puts the gateway and every exit in one memberlist cluster on
// loopback and waits until the gateway's pool holds every exit.
func (f *Farm) startGossip(specs []ExitSpec) error {
	gcfg := cluster.LocalConfig()
	gcfg.BindAddr, gcfg.Insecure, gcfg.Logger = "127.0.0.1:0", true, f.logger
	gcfg.Meta = cluster.Meta{Role: cluster.RoleGateway, ID: "demo-gateway", DC: "eu"}
	gw, err := cluster.New(gcfg, f.Pool)
	if err != nil {
		return fmt.Errorf("demo gossip: %w", err)
	}
	f.nodes = append(f.nodes, gw)
	for _, e := range f.Exits {
		c := cluster.LocalConfig()
		c.BindAddr, c.Insecure, c.Logger, c.Join = "127.0.0.1:0", true, f.logger, []string{gw.Addr()}
		c.Meta = cluster.Meta{Role: cluster.RoleExit, ID: e.Spec.ID, DC: e.Spec.DC, Pool: e.Spec.Pool,
			Country: e.Spec.Country, City: e.Spec.City, ProxyAddr: e.Addr, Capacity: e.Server.Info().MaxTunnels}
		c.Egress = e.Spec.Egress
		n, err := cluster.New(c, nil)
		if err != nil {
			return fmt.Errorf("demo gossip: exit %s: %w", e.Spec.ID, err)
		}
		f.nodes = append(f.nodes, n)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(f.Pool.Exits()) < len(specs) {
		if time.Now().After(deadline) {
			return fmt.Errorf("demo gossip: the gateway sees %d of %d exits after 15s", len(f.Pool.Exits()), len(specs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Members lists the gossip cluster's members (empty without gossip).
func (f *Farm) Members() any {
	if len(f.nodes) == 0 {
		return []any{}
	}
	return f.nodes[0].Members()
}

// DrainExit drains an exit: over gossip when the farm gossips.
func (f *Farm) DrainExit(id string, on bool) error {
	if len(f.nodes) == 0 {
		return f.Pool.Drain(id, on)
	}
	return f.nodes[0].DrainExit(id, on)
}
