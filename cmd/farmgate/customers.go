package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/farmgate/farmgate/auth"
)

const customersUsage = `usage: farmgate customers COMMAND [USER] [flags]

commands:
  add USER     --pools P,... (--password-stdin | --password-hash H) [limits]
  set USER     [--password-stdin | --password-hash H] [--pools ...] [limits]
  disable USER / enable USER / delete USER
  list / show USER / usage USER

store (one of):
  --redis ADDR[,ADDR...]  --redis-url redis://...  [--redis-prefix farmgate:]
  --file customers.yaml

limits: --default-pool P --allow-ips CIDR,... --max-conns N --rate 5/s (or 300/m)
        --burst N --quota 100GB (GB = 10^9, GiB = 2^30; 0 = none) --expires 2027-01-31
other:  --json  --pools-known P,...  --timeout 5s
`

// customersStdin is where --password-stdin reads; tests replace it.
var customersStdin io.Reader = os.Stdin

// customerFlags are every flag of the customers command.
type customerFlags struct {
	redisAddr, redisURL, prefix, file string
	json, passwordStdin               bool
	passwordHash, pools, defaultPool  string
	allowIPs, poolsKnown, expires     string
	maxConns, burst                   int
	rate                              float64
	quota                             int64
	timeout                           time.Duration
}

// runCustomers implements `farmgate customers`: it manages customers in
// Redis or in a customer file.
func runCustomers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprint(stdout, customersUsage)
		if len(args) == 0 {
			return usageError{errors.New("missing command")}
		}
		return nil
	}
	cmd, rest := args[0], args[1:]
	var user string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		user, rest = rest[0], rest[1:]
	}
	var f customerFlags
	fs := flag.NewFlagSet("customers "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&f.redisAddr, "redis", "", "Redis address(es), comma-separated (Cluster or Sentinel with several)")
	fs.StringVar(&f.redisURL, "redis-url", "", "Redis URL, redis://[user:pass@]host:port/db")
	fs.StringVar(&f.prefix, "redis-prefix", auth.DefaultPrefix, "prefix of every Redis key")
	fs.StringVar(&f.file, "file", "", "customer YAML file")
	fs.BoolVar(&f.json, "json", false, "print JSON")
	fs.BoolVar(&f.passwordStdin, "password-stdin", false, "read the password from stdin (first line)")
	fs.StringVar(&f.passwordHash, "password-hash", "", "argon2id or bcrypt hash")
	fs.StringVar(&f.pools, "pools", "", "pools, comma-separated")
	fs.StringVar(&f.defaultPool, "default-pool", "", "default pool")
	fs.StringVar(&f.allowIPs, "allow-ips", "", "client CIDRs, comma-separated (\"\" = anywhere)")
	fs.StringVar(&f.poolsKnown, "pools-known", "", "if set, the pools that exist; others are refused")
	fs.StringVar(&f.expires, "expires", "", "expiry: RFC 3339 time or date (\"\" = never)")
	fs.IntVar(&f.maxConns, "max-conns", 0, "max concurrent tunnels (0 = no cap)")
	fs.IntVar(&f.burst, "burst", 0, "request burst (0 = default)")
	fs.Var((*perSecond)(&f.rate), "rate", "requests per second: 5, 5/s or 300/m (0 = unlimited)")
	fs.Var((*byteSize)(&f.quota), "quota", "bytes per calendar month: 100GB, 1.5TB, 500GiB or bytes (0 = no quota)")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Second, "timeout of each store call")
	if err := parseArgs(fs, rest); err != nil {
		return err
	}
	if user == "" && fs.NArg() > 0 {
		user = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	needsUser := cmd != "list"
	switch cmd {
	case "add", "set", "disable", "enable", "delete", "list", "show", "usage":
	default:
		return usageError{fmt.Errorf("unknown command %q (want add, set, disable, enable, delete, list, show or usage)", cmd)}
	}
	if needsUser && user == "" {
		return usageError{fmt.Errorf("%s: missing USER", cmd)}
	}
	if !needsUser && user != "" {
		return usageError{fmt.Errorf("%s: unexpected argument %q", cmd, user)}
	}

	admin, rdb, closeStore, err := openCustomerStore(ctx, &f, set)
	if err != nil {
		return err
	}
	defer closeStore()
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()

	switch cmd {
	case "add", "set":
		return customersPut(ctx, admin, cmd, user, &f, set, stdout)
	case "disable", "enable":
		r, err := admin.Get(ctx, user)
		if err != nil {
			return err
		}
		r.Disabled = cmd == "disable"
		if err := admin.Put(ctx, r, false); err != nil {
			return err
		}
		return printRecord(stdout, r, f.json)
	case "delete":
		if err := admin.Delete(ctx, user); err != nil {
			return err
		}
		if f.json {
			return json.NewEncoder(stdout).Encode(map[string]string{"deleted": user})
		}
		fmt.Fprintf(stdout, "deleted %s\n", user)
		return nil
	case "show":
		r, err := admin.Get(ctx, user)
		if err != nil {
			return err
		}
		return printRecord(stdout, r, f.json)
	case "list":
		rs, err := admin.List(ctx)
		if err != nil {
			return err
		}
		return printList(stdout, rs, f.json)
	case "usage":
		if rdb == nil {
			return errors.New("usage: a file-store gateway keeps usage in its memory; read it from its admin API (GET /api/customers/{user}/usage)")
		}
		if _, err := admin.Get(ctx, user); err != nil {
			return err
		}
		m, err := auth.NewRedisMeter(rdb, auth.MeterConfig{Prefix: f.prefix, Timeout: f.timeout})
		if err != nil {
			return err
		}
		rep, err := m.Usage(ctx, user)
		if err != nil {
			return err
		}
		return printUsage(stdout, rep, f.json)
	}
	return nil
}

// openCustomerStore opens the store the flags name.
func openCustomerStore(ctx context.Context, f *customerFlags, set map[string]bool) (auth.Admin, redis.UniversalClient, func(), error) {
	n := 0
	for _, name := range []string{"redis", "redis-url", "file"} {
		if set[name] {
			n++
		}
	}
	if n != 1 {
		return nil, nil, nil, usageError{errors.New("want exactly one of --redis, --redis-url and --file")}
	}
	if f.file != "" {
		s, err := auth.OpenFile(f.file, auth.Config{})
		if err != nil {
			return nil, nil, nil, err
		}
		return s, nil, func() {}, nil
	}
	rdb, err := newRedisClient(ctx, f.redisAddr, f.redisURL, f.timeout)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := auth.NewRedisStore(rdb, auth.Config{Prefix: f.prefix, Timeout: f.timeout})
	if err != nil {
		rdb.Close()
		return nil, nil, nil, err
	}
	return s, rdb, func() { rdb.Close() }, nil
}

// customersPut adds or changes a customer from the flags that were set.
func customersPut(ctx context.Context, admin auth.Admin, cmd, user string, f *customerFlags, set map[string]bool, stdout io.Writer) error {
	var r auth.CustomerRecord
	if cmd == "set" {
		var err error
		if r, err = admin.Get(ctx, user); err != nil {
			return err
		}
	} else {
		r.User = user
		if !set["pools"] {
			return usageError{errors.New("add: missing --pools")}
		}
		if !set["password-stdin"] && !set["password-hash"] {
			return usageError{errors.New("add: want --password-stdin or --password-hash")}
		}
	}
	if set["password-stdin"] && set["password-hash"] {
		return usageError{errors.New("want one of --password-stdin and --password-hash")}
	}
	if f.passwordStdin {
		line, err := readPassword(customersStdin)
		if err != nil {
			return err
		}
		r.Password, r.PasswordHash = line, ""
	}
	if set["password-hash"] {
		r.Password, r.PasswordHash = "", f.passwordHash
	}
	if set["pools"] {
		r.Pools = splitList(f.pools)
	}
	if set["default-pool"] {
		r.DefaultPool = f.defaultPool
	}
	if set["allow-ips"] {
		r.AllowIPs = splitList(f.allowIPs)
	}
	if set["max-conns"] {
		r.MaxConns = f.maxConns
	}
	if set["rate"] {
		r.RatePerSec = f.rate
	}
	if set["burst"] {
		r.RateBurst = f.burst
	}
	if set["quota"] {
		r.QuotaBytes = f.quota
	}
	if set["expires"] {
		r.Expires = f.expires
	}
	var known func(string) bool
	if set["pools-known"] {
		ks := splitList(strings.ToLower(f.poolsKnown))
		known = func(p string) bool {
			for _, k := range ks {
				if k == p {
					return true
				}
			}
			return false
		}
	}
	if err := r.Validate(known); err != nil {
		return fmt.Errorf("customer %q: %w", user, err)
	}
	if err := admin.Put(ctx, r, cmd == "add"); err != nil {
		return err
	}
	return printRecord(stdout, r, f.json)
}

// readPassword reads the first line of r, without its line ending.
func readPassword(r io.Reader) (string, error) {
	data, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", fmt.Errorf("reading password from stdin: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return "", usageError{errors.New("--password-stdin: empty password")}
	}
	return line, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// publicRecord is a record as printed: never a password or a hash.
type publicRecord struct {
	User        string   `json:"user"`
	Enabled     bool     `json:"enabled"`
	Pools       []string `json:"pools"`
	DefaultPool string   `json:"default_pool"`
	AllowIPs    []string `json:"allow_ips"`
	MaxConns    int      `json:"max_conns"`
	RatePerSec  float64  `json:"rate_per_sec"`
	RateBurst   int      `json:"rate_burst"`
	QuotaBytes  int64    `json:"quota_bytes"`
	Expires     string   `json:"expires"`
}

func public(r auth.CustomerRecord) publicRecord {
	p := publicRecord{User: r.User, Enabled: !r.Disabled, Pools: r.Pools, DefaultPool: r.DefaultPool,
		AllowIPs: r.AllowIPs, MaxConns: r.MaxConns, RatePerSec: r.RatePerSec, RateBurst: r.RateBurst,
		QuotaBytes: r.QuotaBytes, Expires: r.Expires}
	if p.DefaultPool == "" && len(p.Pools) > 0 {
		p.DefaultPool = strings.ToLower(p.Pools[0])
	}
	if p.Pools == nil {
		p.Pools = []string{}
	}
	if p.AllowIPs == nil {
		p.AllowIPs = []string{}
	}
	return p
}

func printRecord(w io.Writer, r auth.CustomerRecord, asJSON bool) error {
	p := public(r)
	if asJSON {
		return json.NewEncoder(w).Encode(p)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "user:\t%s\nenabled:\t%t\npools:\t%s\ndefault_pool:\t%s\nallow_ips:\t%s\nmax_conns:\t%s\nrate_per_sec:\t%s\nrate_burst:\t%s\nquota_bytes:\t%s\nexpires:\t%s\n",
		p.User, p.Enabled, strings.Join(p.Pools, ","), p.DefaultPool, orAny(strings.Join(p.AllowIPs, ","), "anywhere"),
		zeroIs(int64(p.MaxConns), "no cap"), orAny(strconv.FormatFloat(p.RatePerSec, 'g', -1, 64), ""), zeroIs(int64(p.RateBurst), "default"),
		zeroIs(p.QuotaBytes, "no quota"), orAny(p.Expires, "never"))
	return tw.Flush()
}

func orAny(s, empty string) string {
	if s == "" || s == "0" {
		if empty == "" {
			return "unlimited"
		}
		return empty
	}
	return s
}

func zeroIs(n int64, zero string) string {
	if n == 0 {
		return zero
	}
	return strconv.FormatInt(n, 10)
}

func printList(w io.Writer, rs []auth.CustomerRecord, asJSON bool) error {
	if asJSON {
		out := make([]publicRecord, 0, len(rs))
		for _, r := range rs {
			out = append(out, public(r))
		}
		return json.NewEncoder(w).Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tENABLED\tPOOLS\tMAX_CONNS\tRATE\tQUOTA_BYTES\tEXPIRES")
	for _, r := range rs {
		p := public(r)
		fmt.Fprintf(tw, "%s\t%t\t%s\t%d\t%g\t%d\t%s\n", p.User, p.Enabled, strings.Join(p.Pools, ","), p.MaxConns, p.RatePerSec, p.QuotaBytes, orAny(p.Expires, "never"))
	}
	return tw.Flush()
}

func printUsage(w io.Writer, rep auth.UsageReport, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(rep)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PERIOD\tPOOL\tUP\tDOWN\tTOTAL")
	fmt.Fprintf(tw, "%s\t*\t%d\t%d\t%d\n", rep.Month, rep.ThisMonth.Up, rep.ThisMonth.Down, rep.ThisMonth.Total())
	for p, t := range rep.MonthByPool {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", rep.Month, p, t.Up, t.Down, t.Total())
	}
	fmt.Fprintf(tw, "%s\t*\t%d\t%d\t%d\n", rep.Day, rep.Today.Up, rep.Today.Down, rep.Today.Total())
	for p, t := range rep.TodayByPool {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", rep.Day, p, t.Up, t.Down, t.Total())
	}
	return tw.Flush()
}
