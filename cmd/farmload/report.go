//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// Pair is one phase measured directly against one exit, through the
// gateway, with --reference through the reference proxy, and with
// --tls-links through the gateway whose links to its exits are mutual TLS.
type Pair struct {
	Direct    Phase  `json:"direct"`
	Gateway   Phase  `json:"gateway"`
	Reference *Phase `json:"reference,omitempty"`
	TLS       *Phase `json:"gateway_tls,omitempty"`
}

// Run is one run: the phases that ran (nil when left out by --only).
type Run struct {
	Idle     *Pair `json:"idle,omitempty"`
	Tunnels  *Pair `json:"tunnels,omitempty"`
	Requests *Pair `json:"requests,omitempty"`
	Bulk     *Pair `json:"bulk,omitempty"`
}

// metric is one row of the table.
type metric struct {
	name   string
	get    func(r Run) (figures, bool)
	target string                            // what the issue asks, "" for information only
	pass   func(ratio, gateway float64) bool // nil for information only
}

var metrics = []metric{
	{"tunnels/s", pick(func(r Run) *Pair { return r.Tunnels }, func(p Phase) float64 { return p.Rate }),
		"≥0.70×", func(ratio, _ float64) bool { return ratio >= 0.7 }},
	{"requests/s", pick(func(r Run) *Pair { return r.Requests }, func(p Phase) float64 { return p.Rate }),
		"≥0.70×", func(ratio, _ float64) bool { return ratio >= 0.7 }},
	{"bulk MB/s", pick(func(r Run) *Pair { return r.Bulk }, func(p Phase) float64 { return p.Rate }),
		"≥0.60×", func(ratio, _ float64) bool { return ratio >= 0.6 }},
	{"set-up p50 ms", pick(func(r Run) *Pair { return r.Tunnels }, func(p Phase) float64 { return p.P50ms }),
		"", nil},
	{"set-up p99 ms", pick(func(r Run) *Pair { return r.Tunnels }, func(p Phase) float64 { return p.P99ms }),
		"≤1.60×", func(ratio, _ float64) bool { return ratio <= 1.6 }},
	{"KiB/idle tunnel", pick(func(r Run) *Pair { return r.Idle }, func(p Phase) float64 { return p.Rate }),
		"gw ≤16", func(_, g float64) bool { return g <= 16 }},
	{"fds/idle tunnel", pick(func(r Run) *Pair { return r.Idle }, func(p Phase) float64 { return p.FDs }),
		"", nil},
	{"proxy CPU µs/tunnel", pick(func(r Run) *Pair { return r.Tunnels }, perOp),
		"", nil},
	{"proxy CPU µs/request", pick(func(r Run) *Pair { return r.Requests }, perOp),
		"", nil},
	{"exits CPU µs/tunnel", pick(func(r Run) *Pair { return r.Tunnels }, func(p Phase) float64 {
		return safeDiv(p.ExitCPU*1e6, float64(p.Ops))
	}), "", nil},
	{"exits CPU µs/request", pick(func(r Run) *Pair { return r.Requests }, func(p Phase) float64 {
		return safeDiv(p.ExitCPU*1e6, float64(p.Ops))
	}), "", nil},
	{"all CPU µs/tunnel", pick(func(r Run) *Pair { return r.Tunnels }, func(p Phase) float64 {
		return safeDiv(p.AllCPU*1e6, float64(p.Ops))
	}), "", nil},
	{"all CPU µs/request", pick(func(r Run) *Pair { return r.Requests }, func(p Phase) float64 {
		return safeDiv(p.AllCPU*1e6, float64(p.Ops))
	}), "", nil},
	{"proxy CPU ms/GB bulk", pick(func(r Run) *Pair { return r.Bulk }, func(p Phase) float64 {
		return safeDiv(p.CPU*1e3, p.Rate*p.Seconds/1e3)
	}), "", nil},
}

// perOp is the CPU time of the measured proxy process per successful op.
func perOp(p Phase) float64 { return safeDiv(p.CPU*1e6, float64(p.Ops)) }

// figures are one metric of one run in each mode; ref and tls are 0
// without --reference and --tls-links.
type figures struct{ direct, gateway, ref, tls float64 }

func pick(phase func(Run) *Pair, val func(Phase) float64) func(Run) (figures, bool) {
	return func(r Run) (figures, bool) {
		p := phase(r)
		if p == nil {
			return figures{}, false
		}
		x := figures{direct: val(p.Direct), gateway: val(p.Gateway)}
		if p.Reference != nil {
			x.ref = val(*p.Reference)
		}
		if p.TLS != nil {
			x.tls = val(*p.TLS)
		}
		return x, true
	}
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Row is one metric's figures, as printed and as --json emits them.
type Row struct {
	Metric    string  `json:"metric"`
	Direct    float64 `json:"direct"`
	Gateway   float64 `json:"gateway"`
	Ratio     float64 `json:"ratio"`
	Reference float64 `json:"reference,omitempty"`       // the reference proxy's figure
	RefRatio  float64 `json:"reference_ratio,omitempty"` // reference / direct
	TLS       float64 `json:"gateway_tls,omitempty"`     // the gateway with TLS links
	TLSRatio  float64 `json:"tls_ratio,omitempty"`       // gateway_tls / gateway: what TLS links cost
	Target    string  `json:"target,omitempty"`
	Pass      *bool   `json:"pass,omitempty"`
}

// rows computes a run's table.
func rows(r Run) []Row {
	var out []Row
	for _, m := range metrics {
		x, ok := m.get(r)
		if !ok {
			continue
		}
		out = append(out, row(m, x, safeDiv(x.gateway, x.direct), safeDiv(x.ref, x.direct), safeDiv(x.tls, x.gateway)))
	}
	return out
}

func row(m metric, x figures, ratio, refRatio, tlsRatio float64) Row {
	r := Row{Metric: m.name, Direct: x.direct, Gateway: x.gateway, Ratio: ratio, Reference: x.ref, RefRatio: refRatio,
		TLS: x.tls, TLSRatio: tlsRatio, Target: m.target}
	if m.pass != nil {
		ok := m.pass(ratio, x.gateway)
		r.Pass = &ok
	}
	return r
}

// medianRows is, per metric, the median of the direct values, of the
// gateway values and of the per-run ratios.
func medianRows(runs []Run) []Row {
	var out []Row
	for _, m := range metrics {
		var ds, gs, rs, xs, xrs, ts, trs []float64
		for _, r := range runs {
			f, ok := m.get(r)
			if !ok {
				continue
			}
			ds, gs, rs = append(ds, f.direct), append(gs, f.gateway), append(rs, safeDiv(f.gateway, f.direct))
			xs, xrs = append(xs, f.ref), append(xrs, safeDiv(f.ref, f.direct))
			ts, trs = append(ts, f.tls), append(trs, safeDiv(f.tls, f.gateway))
		}
		if len(ds) == 0 {
			continue
		}
		out = append(out, row(m, figures{median(ds), median(gs), median(xs), median(ts)}, median(rs), median(xrs), median(trs)))
	}
	return out
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// errorCounts totals the failed ops per phase and mode over runs.
func errorCounts(runs []Run) map[string]int64 {
	out := map[string]int64{}
	for _, r := range runs {
		for name, p := range r.pairs() {
			out[name+"/direct"] += p.Direct.Errors
			out[name+"/gateway"] += p.Gateway.Errors
			if p.Reference != nil {
				out[name+"/reference"] += p.Reference.Errors
			}
			if p.TLS != nil {
				out[name+"/"+modeTLS] += p.TLS.Errors
			}
		}
	}
	return out
}

func (r Run) pairs() map[string]*Pair {
	out := map[string]*Pair{}
	for name, p := range map[string]*Pair{"idle": r.Idle, "tunnels": r.Tunnels, "requests": r.Requests, "bulk": r.Bulk} {
		if p != nil {
			out[name] = p
		}
	}
	return out
}

// printTable writes a titled table of rows and the error counts.
func printTable(w io.Writer, title string, rs []Row, errs map[string]int64) {
	fmt.Fprintf(w, "\n%s\n", title)
	withRef := slices.ContainsFunc(rs, func(r Row) bool { return r.Reference != 0 })
	withTLS := slices.ContainsFunc(rs, func(r Row) bool { return r.TLS != 0 })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "metric\tdirect\tgateway\tratio\t"
	if withRef {
		head += "reference\tratio\t"
	}
	if withTLS {
		head += "gw tls links\ttls/gw\t"
	}
	fmt.Fprintln(tw, head+"target\t\t")
	for _, r := range rs {
		verdict := ""
		if r.Pass != nil {
			verdict = "ok"
			if !*r.Pass {
				verdict = "MISS"
			}
		}
		ref := ""
		if withRef {
			ref = fmt.Sprintf("%s\t%.2f×\t", num(r.Reference), r.RefRatio)
		}
		if withTLS {
			ref += fmt.Sprintf("%s\t%.2f×\t", num(r.TLS), r.TLSRatio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f×\t%s%s\t%s\t\n", r.Metric, num(r.Direct), num(r.Gateway), r.Ratio, ref, r.Target, verdict)
	}
	tw.Flush()
	var names []string
	var total int64
	for k, v := range errs {
		names = append(names, fmt.Sprintf("%s %d", k, v))
		total += v
	}
	slices.Sort(names)
	verdict := "ok"
	if total > 0 {
		verdict = "MISS"
	}
	fmt.Fprintf(w, "errors (target 0, %s): %s\n", verdict, strings.Join(names, ", "))
	fmt.Fprintln(w, "(proxy CPU: the gateway process, the exit in direct mode, or the reference proxy; exits CPU: the 4 exits; all CPU: farmload + gateway + 4 exits + reference; in gateway-tls mode, its gateway and its own 4 exits)")
}

func num(x float64) string {
	switch a := math.Abs(x); {
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	case a >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

// printErrorSamples writes the first messages of failed ops of a run.
func printErrorSamples(w io.Writer, r Run) {
	for name, p := range r.pairs() {
		modes := map[string]Phase{"direct": p.Direct, "gateway": p.Gateway}
		if p.Reference != nil {
			modes["reference"] = *p.Reference
		}
		if p.TLS != nil {
			modes[modeTLS] = *p.TLS
		}
		for mode, ph := range modes {
			for _, s := range ph.Samples {
				fmt.Fprintf(w, "  %s/%s error: %s\n", name, mode, s)
			}
		}
	}
}

// Result is what --json prints.
type Result struct {
	Config map[string]any   `json:"config"`
	Runs   []Run            `json:"runs"`
	PerRun [][]Row          `json:"per_run"`
	Median []Row            `json:"median"`
	Errors map[string]int64 `json:"errors"`
}

func writeJSON(w io.Writer, res Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(res)
}
