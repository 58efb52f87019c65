package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/farmgate/farmgate/cluster"
	"github.com/farmgate/farmgate/gateway"
	"github.com/farmgate/farmgate/pool"
)

// statusExit is what status reads of an exit in /api/exits.
type statusExit struct {
	ID            string  `json:"id"`
	DC            string  `json:"dc"`
	Pool          string  `json:"pool"`
	Country       string  `json:"country"`
	State         string  `json:"state"`
	Reason        string  `json:"reason"`
	ActiveTunnels int     `json:"active_tunnels"`
	LatencyMS     float64 `json:"latency_ms"`
}

// statusActivity is what status reads of /api/activity.
type statusActivity struct {
	Customers      []gateway.CustomerActivity `json:"customers"`
	TotalCustomers int                        `json:"total_customers"`
	LastMinute     gateway.Window             `json:"last_minute"`
}

// runStatus prints the farm at a glance from a gateway's admin API.
func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	adminURL := fs.String("admin", "http://127.0.0.1:9090", "a gateway's admin listener: URL or host:port")
	token := fs.String("token", "", "the admin token (a gateway's --admin-token-file), needed off loopback")
	tokenFile := fs.String("admin-token-file", "", "file holding the admin token, instead of --token")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the gateway's answers")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	base := strings.TrimSuffix(*adminURL, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	tok := *token
	if *tokenFile != "" {
		t, err := readTokenFlag("admin-token-file", *tokenFile)
		if err != nil {
			return err
		}
		tok = t
	}
	if *timeout <= 0 {
		return usageError{fmt.Errorf("--timeout: want a positive duration such as 5s, got %s", *timeout)}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	c := statusClient{base: base, token: tok}

	var exits []statusExit
	if err := c.get(ctx, "/api/exits", &exits); err != nil {
		return err
	}
	var members []cluster.Member
	if err := c.get(ctx, "/api/cluster", &members); err != nil {
		return err
	}
	var act statusActivity
	if err := c.get(ctx, "/api/activity?limit=1000", &act); err != nil {
		return err
	}
	ready := c.ready(ctx)
	printStatus(stdout, base, exits, members, act, ready, time.Now())
	return nil
}

// statusClient asks one admin API.
type statusClient struct {
	base, token string
}

func (c statusClient) do(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, usageError{fmt.Errorf("--admin: %w", err)}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("asking the gateway's admin API at %s (--admin): %w", c.base, err)
	}
	return resp, nil
}

func (c statusClient) get(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	switch {
	case resp.StatusCode == http.StatusUnauthorized && c.token == "":
		return fmt.Errorf("%s%s: 401: off loopback the admin API wants its token: give --token or --admin-token-file", c.base, path)
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("%s%s: 401: the admin API refused the token given", c.base, path)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("%s%s: %s: %s", c.base, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s%s: not the answer of a farmgate gateway: %w", c.base, path, err)
	}
	return nil
}

// ready returns "yes" or why the gateway is not ready.
func (c statusClient) ready(ctx context.Context) string {
	resp, err := c.do(ctx, "/readyz")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return "yes"
	}
	return "no: " + strings.TrimPrefix(strings.TrimSpace(string(b)), "not ready: ")
}

var statusStates = []string{pool.StateHealthy, pool.StateDraining, pool.StateEjected, pool.StateDown}

func printStatus(w io.Writer, base string, exits []statusExit, members []cluster.Member, act statusActivity, ready string, now time.Time) {
	fmt.Fprintf(w, "farmgate status of %s at %s\n", base, now.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "gateway ready: %s\n\n", ready)

	// Exits, per DC.
	byState := map[string]int{}
	dcs := map[string][]statusExit{}
	for _, e := range exits {
		byState[e.State]++
		dcs[e.DC] = append(dcs[e.DC], e)
	}
	fmt.Fprintf(w, "EXITS: %d (%s)\n", len(exits), countStates(byState))
	names := make([]string, 0, len(dcs))
	for dc := range dcs {
		names = append(names, dc)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DC\tEXIT\tPOOL\tCOUNTRY\tSTATE\tTUNNELS\tSETUP\t")
	for _, dc := range names {
		list := dcs[dc]
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
		for _, e := range list {
			state := e.State
			if e.Reason != "" && e.State != pool.StateHealthy {
				state += " (" + e.Reason + ")"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", orDash(dc), e.ID, orDash(e.Pool), orDash(e.Country), state, e.ActiveTunnels, fmtMS(e.LatencyMS))
		}
	}
	tw.Flush()
	for _, dc := range names {
		st := map[string]int{}
		for _, e := range dcs[dc] {
			st[e.State]++
		}
		fmt.Fprintf(w, "  DC %s: %s\n", orDash(dc), countStates(st))
	}

	// Gateways, as gossip sees them.
	var gws []cluster.Member
	for _, m := range members {
		if m.Role == cluster.RoleGateway {
			gws = append(gws, m)
		}
	}
	fmt.Fprintln(w)
	if len(members) == 0 {
		fmt.Fprintln(w, "GATEWAYS: this one (no gossip: other gateways are not known here)")
	} else {
		alive := 0
		for _, g := range gws {
			if g.State == cluster.StateAlive {
				alive++
			}
		}
		fmt.Fprintf(w, "GATEWAYS: %d alive of %d known\n", alive, len(gws))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, g := range gws {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t\n", orDash(g.DC), g.ID, g.Addr, g.State)
		}
		tw.Flush()
	}

	// Customers online and errors, on this gateway.
	var online []gateway.CustomerActivity
	for _, c := range act.Customers {
		if c.LiveTunnels > 0 {
			online = append(online, c)
		}
	}
	sort.SliceStable(online, func(i, j int) bool { return online[i].LiveTunnels > online[j].LiveTunnels })
	fmt.Fprintf(w, "\nCUSTOMERS ONLINE (live tunnels on this gateway): %d\n", len(online))
	for i, c := range online {
		if i == 10 {
			fmt.Fprintf(w, "  … and %d more\n", len(online)-10)
			break
		}
		fmt.Fprintf(w, "  %s: %d tunnels\n", c.User, c.LiveTunnels)
	}
	lm := act.LastMinute
	fmt.Fprintf(w, "\nLAST MINUTE (this gateway): %d requests, %d errors", lm.Requests, lm.Errors)
	if len(lm.ErrorsByReason) > 0 {
		reasons := make([]string, 0, len(lm.ErrorsByReason))
		for r := range lm.ErrorsByReason {
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(i, j int) bool {
			a, b := lm.ErrorsByReason[reasons[i]], lm.ErrorsByReason[reasons[j]]
			return a > b || a == b && reasons[i] < reasons[j]
		})
		parts := make([]string, len(reasons))
		for i, r := range reasons {
			parts[i] = fmt.Sprintf("%s %d", r, lm.ErrorsByReason[r])
		}
		fmt.Fprintf(w, ": %s", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
}

func countStates(m map[string]int) string {
	parts := make([]string, 0, len(statusStates))
	for _, s := range statusStates {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[s], s))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtMS(ms float64) string {
	if ms == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", ms)
}
