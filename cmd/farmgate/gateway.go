package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.yaml.in/yaml/v3"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/gateway/admin"
	"github.com/farmgate/farmgate/pool"
)

// upstreamConfig is a third-party upstream in the gateway's YAML config.
type upstreamConfig struct {
	ID      string `yaml:"id"`
	URL     string `yaml:"url"` // http://user:pass@host:port or socks5://user:pass@host:port
	DC      string `yaml:"dc"`
	Pool    string `yaml:"pool"`
	Country string `yaml:"country"`
	City    string `yaml:"city"`
	Weight  int    `yaml:"weight"`
}

func runGateway(ctx context.Context, args []string, logger *slog.Logger) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	d := gateway.DefaultConfig()
	listen := fs.String("listen", "127.0.0.1:8080", "customer listener")
	adminAddr := fs.String("admin", "127.0.0.1:9090", "operator listener (JSON API); empty disables it")
	dc := fs.String("dc", "", "datacenter of this gateway; its exits are preferred")
	customers := fs.String("customers", "", "YAML customer file (required)")
	tokenFile := fs.String("token-file", "", "file holding the gateway↔exit token (required)")
	var exits listFlag
	fs.Var(&exits, "exit", "a farmgate exit as ID=HOST:PORT (repeatable)")
	policy := fs.String("policy", pool.DefaultConfig().DefaultPolicy, "exit selection policy: round_robin, weighted, least_conn, least_latency, random")
	probeURL := fs.String("probe-url", "", "URL fetched through each exit to probe its health; empty disables active probes")
	readHeader := fs.Duration("read-header-timeout", d.ReadHeaderTimeout, "customer request header timeout")
	exitDial := fs.Duration("exit-dial-timeout", d.ExitDialTimeout, "TCP connect timeout to an exit")
	exitReply := fs.Duration("exit-reply-timeout", d.ExitReplyTimeout, "wait for an exit's reply to CONNECT or a request")
	idle := fs.Duration("idle-timeout", d.IdleTimeout, "idle tunnel timeout")
	drain := fs.Duration("drain-timeout", drainTimeout, "on SIGTERM, how long live tunnels may finish")
	accessLog := fs.String("access-log", "off", "access log on stdout: off, json or text")
	extra, err := parseFlags(fs, args, "exits")
	if err != nil {
		return err
	}
	var upstreams []upstreamConfig
	if n := extra["exits"]; n != nil {
		if err := decodeStrict(n, &upstreams); err != nil {
			return usageError{fmt.Errorf("config: exits: %w", err)}
		}
	}
	token, err := readToken(*tokenFile)
	if err != nil {
		return err
	}
	if *customers == "" {
		return usageError{errors.New("--customers: required")}
	}
	acfg := auth.DefaultConfig()
	acfg.Logger = logger
	store, err := auth.LoadFileConfig(*customers, acfg)
	if err != nil {
		return usageError{fmt.Errorf("--customers: %w", err)}
	}
	var static []gateway.StaticExit
	for _, e := range exits {
		se, err := gateway.ParseStaticExit(e)
		if err != nil {
			return usageError{fmt.Errorf("--exit: %w", err)}
		}
		static = append(static, se)
	}
	if len(static) == 0 && len(upstreams) == 0 {
		return usageError{errors.New("--exit: name at least one exit (or exits: in the config)")}
	}

	gcfg := d
	gcfg.DC, gcfg.ExitToken = *dc, token
	gcfg.ReadHeaderTimeout, gcfg.ExitDialTimeout, gcfg.ExitReplyTimeout, gcfg.IdleTimeout = *readHeader, *exitDial, *exitReply, *idle
	if err := gcfg.Validate(); err != nil {
		return usageError{err}
	}
	pcfg := pool.DefaultConfig()
	pcfg.LocalDC = strings.ToLower(*dc)
	pcfg.DefaultPolicy = *policy
	var gw *gateway.Gateway
	if *probeURL != "" {
		pcfg.Probe = func(ctx context.Context, e *pool.Exit) error { return gw.Probe(ctx, e, *probeURL) }
	}
	if err := pcfg.Validate(); err != nil {
		return usageError{fmt.Errorf("--policy: %w", err)}
	}
	p, err := pool.New(pcfg, logger)
	if err != nil {
		return usageError{err}
	}
	for i, u := range upstreams {
		if u.ID == "" || u.URL == "" || u.Pool == "" {
			return usageError{fmt.Errorf("config: exits[%d]: id, url and pool are required", i)}
		}
		p.Upsert(pool.Exit{ID: u.ID, Addr: u.URL, DC: strings.ToLower(u.DC), Pool: strings.ToLower(u.Pool),
			Country: strings.ToUpper(u.Country), City: strings.ToLower(u.City), Weight: u.Weight})
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), admin.NewPoolCollector(p))
	gcfg.Metrics = reg
	if gcfg.AccessLog, err = newAccessLog(*accessLog, os.Stdout); err != nil {
		return err
	}
	gw, err = gateway.New(gcfg, store, p, logger)
	if err != nil {
		return usageError{err}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); p.Run(runCtx) }()
	go func() { defer wg.Done(); gateway.LearnExits(runCtx, p, static, token, logger) }()

	var adminSrv *http.Server
	if *adminAddr != "" {
		aln, err := net.Listen("tcp", *adminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--admin: %w", err)
		}
		adminSrv = &http.Server{Handler: admin.Handler(admin.Config{Pool: p, Gatherer: reg}), ReadHeaderTimeout: 5 * time.Second}
		go adminSrv.Serve(aln)
	}
	logger.Info("gateway serving", "listen", ln.Addr().String(), "admin", *adminAddr, "dc", *dc, "exits", len(static)+len(upstreams))
	errc := make(chan error, 1)
	go func() { errc <- gw.Serve(ln) }()
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	logger.Info("gateway draining", "deadline", drain.String())
	sctx, scancel := context.WithTimeout(context.Background(), *drain)
	defer scancel()
	serr := gw.Shutdown(sctx)
	if adminSrv != nil {
		adminSrv.Shutdown(sctx)
	}
	cancel()
	wg.Wait()
	logger.Info("gateway stopped", "err", serr)
	return err
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
