//go:build linux

// Command farmload is the farmgate load tool: in one run it measures
// tunnels/s, requests/s, bulk MB/s, tunnel set-up time and memory per idle
// tunnel, directly against one exit and through a gateway in front of four
// exits, and prints the figures and the gateway/direct ratios.
//
// It starts its own farm on loopback (four `farmgate exit` processes and one
// `farmgate gateway`, each its own process so its memory and CPU are its
// own) and its origins in-process. It is Linux-only: it reads /proc and sets
// IP_BIND_ADDRESS_NO_PORT.
//
//	go run ./cmd/farmload --runs 3
//
// It is a benchmark, not a test: figures depend on the machine, and load,
// gateway and exits share its CPUs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are farmload's flags.
type options struct {
	Runs        int
	Duration    time.Duration
	Concurrency int
	MaxOps      int64
	BulkStreams int
	BulkSize    int64
	IdleTunnels int
	Farmgate    string
	JSON        bool
	Only        []string
	Reference   string // "" or refHAProxy
	ExitDelay   time.Duration
	Slices      int // each load phase is cut in this many turns per mode
	ExitProcs   int // GOMAXPROCS of the exits; 0: Go's default
	TLSLinks    bool
}

var allPhases = []string{"idle", "tunnels", "requests", "bulk"}

func main() {
	os.Exit(mainErr(os.Args[1:], os.Stdout, os.Stderr))
}

func mainErr(args []string, stdout, stderr io.Writer) int {
	opts, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "farmload:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	checkSysctl(stderr)
	res, err := run(ctx, opts, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "farmload:", err)
		return 1
	}
	if opts.JSON {
		if err := writeJSON(stdout, res); err != nil {
			fmt.Fprintln(stderr, "farmload:", err)
			return 1
		}
	}
	return 0
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("farmload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `farmload: load a farmgate gateway (in front of 4 exits) and one exit directly, print the ratios

usage: go run ./cmd/farmload [flags]     (run it from the farmgate repo)

farmload starts its own farm on loopback: 4 'farmgate exit' processes and one
'farmgate gateway', built with 'go build -o TMPDIR/farmgate ./cmd/farmgate' in
the module that holds the current directory unless --farmgate names a binary.
For many tunnels/s, first run (as root):
  sysctl -w net.ipv4.ip_local_port_range="1024 65535" net.ipv4.tcp_tw_reuse=1

flags:
`)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.Runs, "runs", 3, "number of runs; the median of them is printed last")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "duration of each load phase, per mode")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "concurrent clients in the tunnels and requests phases (and while opening idle tunnels)")
	fs.Int64Var(&o.MaxOps, "max-ops", 2_000_000, "a phase also stops after this many ops")
	fs.IntVar(&o.BulkStreams, "bulk-streams", 4, "concurrent tunnels in the bulk phase")
	size := fs.String("bulk-size", "64MiB", "bytes each bulk op downloads (suffix KiB, MiB or GiB)")
	fs.IntVar(&o.IdleTunnels, "idle-tunnels", 2000, "idle tunnels held open to measure memory per tunnel")
	fs.StringVar(&o.Farmgate, "farmgate", "", "farmgate binary to run (default: build ./cmd/farmgate into a temporary directory)")
	fs.BoolVar(&o.JSON, "json", false, "print the result as JSON on stdout (tables go to stderr)")
	fs.StringVar(&o.Reference, "reference", "", "also measure a reference proxy in front of the same 4 exits: "+refHAProxy+
		" (TCP mode, round robin; needs the haproxy binary)")
	fs.DurationVar(&o.ExitDelay, "exit-delay", 0, "one-way delay added on every connection to an exit (direct, from the gateway and from the reference), as over a WAN; "+
		"throughput then depends on latency, so read the set-up rows")
	fs.IntVar(&o.Slices, "slices", 5, "cut each load phase into this many slices and let the modes take turns slice by slice, "+
		"so that the machine getting slower or faster during a phase (a shared machine's neighbours) hits every mode alike")
	fs.IntVar(&o.ExitProcs, "exit-gomaxprocs", 0, "GOMAXPROCS of the exit processes, as if each exit had a host of that many CPUs (default: Go's own, this machine's CPU count); "+
		"with 1 the exits cost less CPU per op here, but the direct mode's exit can then use one CPU only (see docs/performance.md)")
	fs.BoolVar(&o.TLSLinks, "tls-links", false, "also measure a second gateway whose links to 4 more exits are mutual TLS (mode gateway-tls; certificates minted for the run), "+
		"next to the plaintext-linked gateway in the same slices, and print the tls/gateway ratios")
	only := fs.String("only", "", "comma-separated phases to run (default all): "+strings.Join(allPhases, ","))
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.BulkSize, err = parseSize(*size); err != nil {
		return o, fmt.Errorf("--bulk-size: %w", err)
	}
	switch {
	case o.Runs < 1 || o.Runs > 100:
		return o, fmt.Errorf("--runs: want 1..100, got %d", o.Runs)
	case o.Duration < 10*time.Millisecond || o.Duration > time.Hour:
		return o, fmt.Errorf("--duration: want 10ms..1h, got %s", o.Duration)
	case o.Concurrency < 1 || o.Concurrency > 10000:
		return o, fmt.Errorf("--concurrency: want 1..10000, got %d", o.Concurrency)
	case o.MaxOps < 1:
		return o, fmt.Errorf("--max-ops: want ≥1, got %d", o.MaxOps)
	case o.BulkStreams < 1 || o.BulkStreams > 1000:
		return o, fmt.Errorf("--bulk-streams: want 1..1000, got %d", o.BulkStreams)
	case o.IdleTunnels < 1 || o.IdleTunnels > 100000:
		return o, fmt.Errorf("--idle-tunnels: want 1..100000, got %d", o.IdleTunnels)
	case o.Slices < 1 || o.Duration/time.Duration(max(o.Slices, 1)) < 100*time.Millisecond:
		return o, fmt.Errorf("--slices: want 1.. and slices of at least 100ms, got %d slices of --duration %s", o.Slices, o.Duration)
	case o.ExitProcs < 0 || o.ExitProcs > 1024:
		return o, fmt.Errorf("--exit-gomaxprocs: want 0..1024, got %d", o.ExitProcs)
	case o.ExitDelay < 0 || o.ExitDelay > 10*time.Second:
		return o, fmt.Errorf("--exit-delay: want 0..10s, got %s", o.ExitDelay)
	}
	switch o.Reference {
	case "":
	case refHAProxy:
		if _, err := exec.LookPath("haproxy"); err != nil {
			return o, fmt.Errorf("--reference %s: %w (apt-get install haproxy)", refHAProxy, err)
		}
	default:
		return o, fmt.Errorf("--reference: want %s, got %q", refHAProxy, o.Reference)
	}
	o.Only = allPhases
	if *only != "" {
		o.Only = nil
		for p := range strings.SplitSeq(*only, ",") {
			p = strings.TrimSpace(p)
			if !slices.Contains(allPhases, p) {
				return o, fmt.Errorf("--only: unknown phase %q (known: %s)", p, strings.Join(allPhases, ","))
			}
			o.Only = append(o.Only, p)
		}
	}
	return o, nil
}

// parseSize parses "64MiB", "512KiB", "1GiB" or a byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 1 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%q: want a size such as 64MiB", s)
	}
	return n * mult, nil
}

// checkSysctl warns when the loopback port range or TIME_WAIT reuse would
// limit tunnels/s, and fixes them when running as root.
func checkSysctl(w io.Writer) {
	want := map[string]string{
		"/proc/sys/net/ipv4/ip_local_port_range": "1024 65535",
		"/proc/sys/net/ipv4/tcp_tw_reuse":        "1",
	}
	var bad []string
	for path, v := range want {
		b, err := os.ReadFile(path)
		if err != nil || strings.Join(strings.Fields(string(b)), " ") != v {
			bad = append(bad, fmt.Sprintf("%s is %q", path, strings.Join(strings.Fields(string(b)), " ")))
		}
	}
	if len(bad) == 0 {
		return
	}
	slices.Sort(bad)
	fmt.Fprintf(w, "farmload: warning: %s; tunnels/s may be limited by ephemeral ports. Fix with:\n  sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\" net.ipv4.tcp_tw_reuse=1\n", strings.Join(bad, ", "))
	if os.Geteuid() != 0 {
		return
	}
	fmt.Fprintln(w, "farmload: running as root: setting them")
	for path, v := range want {
		if err := os.WriteFile(path, []byte(v+"\n"), 0o644); err != nil {
			fmt.Fprintf(w, "farmload: set %s: %v\n", path, err)
		}
	}
}

// run builds (or takes) the farmgate binary, starts the origins and, for
// each run, a fresh farm; runs the phases, alternating direct and gateway;
// and prints the tables.
func run(ctx context.Context, opts options, stdout, stderr io.Writer) (Result, error) {
	table := stdout
	if opts.JSON {
		table = stderr
	}
	res := Result{Config: map[string]any{
		"runs": opts.Runs, "duration": opts.Duration.String(), "concurrency": opts.Concurrency,
		"max_ops": opts.MaxOps, "bulk_streams": opts.BulkStreams, "bulk_size": opts.BulkSize,
		"idle_tunnels": opts.IdleTunnels, "phases": opts.Only, "reference": opts.Reference, "exit_delay": opts.ExitDelay.String(),
		"slices": opts.Slices, "exit_gomaxprocs": opts.ExitProcs, "tls_links": opts.TLSLinks,
	}}
	dir, err := os.MkdirTemp("", "farmload-")
	if err != nil {
		return res, fmt.Errorf("create scratch directory: %w", err)
	}
	defer os.RemoveAll(dir)
	bin := opts.Farmgate
	if bin == "" {
		fmt.Fprintln(stderr, "farmload: building ./cmd/farmgate")
		if bin, err = buildFarmgate(ctx, dir); err != nil {
			return res, err
		}
	}
	o, err := startOrigins()
	if err != nil {
		return res, err
	}
	defer o.close()
	cfg := phaseConfig{
		Duration: opts.Duration, Concurrency: opts.Concurrency, MaxOps: opts.MaxOps,
		BulkStreams: opts.BulkStreams, BulkSize: opts.BulkSize, IdleTunnels: opts.IdleTunnels,
	}
	for i := range opts.Runs {
		r, err := oneRun(ctx, bin, dir, o, cfg, opts, i, stderr)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i+1, err)
		}
		res.Runs = append(res.Runs, r)
		rs := rows(r)
		res.PerRun = append(res.PerRun, rs)
		printTable(table, fmt.Sprintf("run %d of %d", i+1, opts.Runs), rs, errorCounts([]Run{r}))
		printErrorSamples(table, r)
	}
	res.Median = medianRows(res.Runs)
	res.Errors = errorCounts(res.Runs)
	printTable(table, fmt.Sprintf("MEDIAN of %d runs (ratio: median of the per-run ratios; errors: total)", opts.Runs), res.Median, res.Errors)
	return res, nil
}

// oneRun starts a fresh farm (so the idle-memory phase, which goes first,
// sees processes no earlier load has grown) and runs the phases. The modes
// (direct, gateway and the reference proxy if any) take turns phase by phase;
// which goes first rotates every run, and they take turns again in each of
// the --slices slices of a load phase. The idle phase always measures direct
// first so the exit it measures has not carried the other modes' tunnels yet.
func oneRun(ctx context.Context, bin, dir string, o *origins, cfg phaseConfig, opts options, i int, log io.Writer) (Run, error) {
	f, err := startFarm(ctx, bin, dir, o, opts)
	if err != nil {
		return Run{}, err
	}
	defer f.stop()
	all := []string{"direct", "gateway"}
	if opts.Reference != "" {
		all = append(all, opts.Reference)
	}
	if opts.TLSLinks {
		all = append(all, modeTLS)
	}
	var r Run
	for _, name := range allPhases {
		if !slices.Contains(opts.Only, name) {
			continue
		}
		modes := all
		if name != "idle" {
			k := i % len(all)
			modes = append(slices.Clone(all[k:]), all[:k]...)
		}
		// The load phases run in slices, the modes taking turns, so that a
		// change in the machine's speed falls on every mode alike; the idle
		// phase measures memory, once per mode.
		n, sliceCfg := 1, cfg
		if name != "idle" {
			n = max(opts.Slices, 1)
			sliceCfg.Duration = cfg.Duration / time.Duration(n)
			sliceCfg.MaxOps = max(1, cfg.MaxOps/int64(n))
		}
		phases := map[string]*Phase{}
		for range n {
			for _, mode := range modes {
				sleep(ctx, 300*time.Millisecond) // let the previous slice's sockets close
				if ctx.Err() != nil {
					return r, ctx.Err()
				}
				ph, err := measure(ctx, f, o, sliceCfg, name, mode)
				if err != nil {
					return r, fmt.Errorf("%s %s: %w", name, mode, err)
				}
				if sum, ok := phases[mode]; ok {
					sum.merge(ph)
				} else {
					phases[mode] = &ph
				}
			}
		}
		p := &Pair{}
		for _, mode := range modes {
			ph := *phases[mode]
			fmt.Fprintf(log, "run %d: %-8s %-7s %10.1f %-12s ops %d, errors %d, connections %d, CPU %.2fs proxy, %.2fs all in %.2fs\n",
				i+1, name, mode, ph.Rate, unit(name), ph.Ops, ph.Errors, ph.Dials, ph.CPU, ph.AllCPU, ph.Seconds)
			switch mode {
			case "direct":
				p.Direct = ph
			case "gateway":
				p.Gateway = ph
			case modeTLS:
				p.TLS = &ph
			default:
				p.Reference = &ph
			}
		}
		switch name {
		case "idle":
			r.Idle = p
		case "tunnels":
			r.Tunnels = p
		case "requests":
			r.Requests = p
		case "bulk":
			r.Bulk = p
		}
	}
	return r, ctx.Err()
}

func unit(phase string) string {
	return map[string]string{"idle": "KiB/tunnel", "tunnels": "tunnels/s", "requests": "requests/s", "bulk": "MB/s"}[phase]
}

// measure runs one phase in one mode. The process measured (memory, CPU) is
// the gateway, or in direct mode the exit the load goes to.
func measure(ctx context.Context, f *farm, o *origins, cfg phaseConfig, phase, mode string) (Phase, error) {
	target, proc := f.gatewayProxy(), f.gateway
	switch mode {
	case "direct":
		target, proc = f.directProxy(), f.exits[0]
	case refHAProxy:
		target, proc = f.referenceProxy(), f.reference
	case modeTLS:
		target, proc = f.tlsGatewayProxy(), f.tlsGateway
	}
	c := newClient(target)
	var exits []int
	for _, e := range f.exits {
		exits = append(exits, e.pid())
	}
	if mode == modeTLS {
		exits = exits[:0]
		for _, e := range f.tlsExits {
			exits = append(exits, e.pid())
		}
	}
	gw := f.gateway
	if mode == modeTLS {
		gw = f.tlsGateway
	}
	all := append([]int{os.Getpid(), gw.pid()}, exits...)
	if f.reference != nil {
		all = append(all, f.reference.pid())
	}
	cpu0, err := cpuSeconds(proc.pid())
	if err != nil {
		return Phase{}, err
	}
	all0, err := cpuSeconds(all...)
	if err != nil {
		return Phase{}, err
	}
	exits0, err := cpuSeconds(exits...)
	if err != nil {
		return Phase{}, err
	}
	var p Phase
	switch phase {
	case "idle":
		p, err = runIdle(ctx, c, &o.echo, proc.pid(), cfg)
	case "tunnels":
		p = runTunnels(ctx, c, &o.echo, cfg)
	case "requests":
		p = runRequests(ctx, c, &o.web, cfg)
	case "bulk":
		p = runBulk(ctx, c, &o.bulk, cfg)
	}
	if err != nil {
		return p, err
	}
	cpu1, err := cpuSeconds(proc.pid())
	if err != nil {
		return p, fmt.Errorf("%s died during the phase? %w\n%s", proc.name, err, tail(proc.log))
	}
	p.CPU = cpu1 - cpu0
	all1, err := cpuSeconds(all...)
	if err != nil {
		return p, err
	}
	p.AllCPU = all1 - all0
	exits1, err := cpuSeconds(exits...)
	if err != nil {
		return p, err
	}
	p.ExitCPU = exits1 - exits0
	p.Dials = int64(c.n.Load())
	return p, nil
}
