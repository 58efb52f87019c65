//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/sockopt"
)

// opTimeout bounds every single operation (dial, CONNECT reply, echo, one
// HTTP request): a stalled peer is an error, never a hang.
const opTimeout = 5 * time.Second

// loadIPs are the source addresses of the load, used round-robin.
var loadIPs = []string{"127.0.10.1", "127.0.10.2", "127.0.10.3", "127.0.10.4", "127.0.10.5", "127.0.10.6", "127.0.10.7", "127.0.10.8"}

// proxyTarget is a proxy and the Proxy-Authorization value it wants.
type proxyTarget struct {
	addr string
	auth string
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// client sends the load to one proxy.
type client struct {
	proxy  proxyTarget
	locals []*net.TCPAddr
	n      atomic.Uint32 // dials so far: picks the next source address
}

func newClient(p proxyTarget) *client {
	c := &client{proxy: p}
	for _, ip := range loadIPs {
		c.locals = append(c.locals, &net.TCPAddr{IP: net.ParseIP(ip)})
	}
	return c
}

// dial connects to addr from the next load source address. The port is
// chosen at connect time (IP_BIND_ADDRESS_NO_PORT): a bind before connect
// could not reuse ports held in TIME_WAIT.
func (c *client) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	d := net.Dialer{
		Timeout:   opTimeout,
		LocalAddr: c.locals[int(c.n.Add(1))%len(c.locals)],
		Control:   sockopt.BindAddressNoPort,
	}
	return d.DialContext(ctx, "tcp4", addr)
}

// echoMsg is the message each tunnel sends and expects back.
var echoMsg = []byte("farmload echo 0123456789abcdef\n")

// connect dials the proxy and opens a CONNECT tunnel to target, within
// deadline. It returns the connection, any bytes read past the reply head,
// the X-Farmgate-Exit of the reply and the set-up time (dial start to the
// 200 reply).
func (c *client) connect(ctx context.Context, target string, deadline time.Time) (net.Conn, []byte, string, time.Duration, error) {
	t0 := time.Now()
	conn, err := c.dial(ctx, "tcp", c.proxy.addr)
	if err != nil {
		return nil, nil, "", 0, fmt.Errorf("dial proxy: %w", err)
	}
	conn.SetDeadline(deadline)
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\nProxy-Authorization: " + c.proxy.auth + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, nil, "", 0, fmt.Errorf("write CONNECT: %w", err)
	}
	var buf [2048]byte
	n, end := 0, -1
	for end < 0 {
		if n == len(buf) {
			conn.Close()
			return nil, nil, "", 0, errors.New("read CONNECT reply: head too long")
		}
		m, err := conn.Read(buf[n:])
		n += m
		end = bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if end < 0 && err != nil {
			conn.Close()
			return nil, nil, "", 0, fmt.Errorf("read CONNECT reply: %w", err)
		}
	}
	setup := time.Since(t0)
	head := buf[:end]
	status, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) && !bytes.HasPrefix(status, []byte("HTTP/1.0 200")) {
		conn.Close()
		return nil, nil, "", 0, fmt.Errorf("CONNECT %s: %s (%s)", target, status, header(rest, "X-Farmgate-Error"))
	}
	extra := append([]byte(nil), buf[end+4:n]...)
	return conn, extra, header(rest, "X-Farmgate-Exit"), setup, nil
}

// header finds a header's value in a raw response head.
func header(lines []byte, name string) string {
	for line := range bytes.SplitSeq(lines, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && strings.EqualFold(string(k), name) {
			return string(bytes.TrimSpace(v))
		}
	}
	return ""
}

// echoOnce writes echoMsg and reads it back; extra is what the proxy sent
// past its reply head.
func echoOnce(conn net.Conn, extra []byte) error {
	if _, err := conn.Write(echoMsg); err != nil {
		return fmt.Errorf("write echo: %w", err)
	}
	got := make([]byte, len(echoMsg))
	n := copy(got, extra)
	if _, err := io.ReadFull(conn, got[n:]); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if !bytes.Equal(got, echoMsg) {
		return fmt.Errorf("read echo: got %q", got)
	}
	return nil
}

// tunnelOnce is one op of the tunnels phase: connect, CONNECT, echo, close.
func (c *client) tunnelOnce(ctx context.Context, target string) (time.Duration, string, error) {
	conn, extra, exit, setup, err := c.connect(ctx, target, time.Now().Add(opTimeout))
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	return setup, exit, echoOnce(conn, extra)
}

// phaseConfig bounds a phase.
type phaseConfig struct {
	Duration    time.Duration // how long the phase sends load
	Concurrency int           // concurrent workers
	MaxOps      int64         // the phase stops after this many ops even if time is left
	BulkStreams int           // bulk phase: concurrent streams
	BulkSize    int64         // bulk phase: bytes per stream op
	IdleTunnels int           // idle phase: tunnels held open
}

// Phase is what one phase measured in one mode.
type Phase struct {
	Ops     int64    `json:"ops"`                      // successful ops
	Errors  int64    `json:"errors"`                   // failed ops
	Seconds float64  `json:"seconds"`                  // wall time from the first op to the last one's end
	Rate    float64  `json:"rate"`                     // ops/s, MB/s (bulk) or KiB per tunnel (idle)
	P50ms   float64  `json:"p50_ms,omitempty"`         // tunnels: set-up time
	P99ms   float64  `json:"p99_ms,omitempty"`         // tunnels: set-up time
	FDs     float64  `json:"fds_per_tunnel,omitempty"` // idle: descriptors per idle tunnel
	CPU     float64  `json:"cpu_s"`                    // CPU seconds the measured process (the gateway, or the exit in direct mode) used
	ExitCPU float64  `json:"exits_cpu_s"`              // CPU seconds of the 4 exits together
	AllCPU  float64  `json:"all_cpu_s"`                // CPU seconds of the farm (gateway and exits) and the load process together
	Dials   int64    `json:"dials"`                    // connections the load opened to the proxy
	Samples []string `json:"error_samples,omitempty"`

	// What merge needs to combine slices: what Rate counts (ops, or MB in
	// the bulk phase) and every set-up time of the tunnels phase.
	amount float64
	setups []time.Duration
}

// merge adds q, a later slice of the same phase in the same mode, to p.
func (p *Phase) merge(q Phase) {
	p.Ops += q.Ops
	p.Errors += q.Errors
	p.Seconds += q.Seconds
	p.CPU += q.CPU
	p.ExitCPU += q.ExitCPU
	p.AllCPU += q.AllCPU
	p.Dials += q.Dials
	p.Samples = append(p.Samples, q.Samples[:min(len(q.Samples), max(0, 5-len(p.Samples)))]...)
	p.amount += q.amount
	p.Rate = p.amount / p.Seconds
	if len(q.setups) > 0 {
		p.setups = append(p.setups, q.setups...)
		slices.Sort(p.setups)
		p.P50ms = ms(percentile(p.setups, 0.50))
		p.P99ms = ms(percentile(p.setups, 0.99))
	}
}

// errLog counts failed ops and keeps the first few messages.
type errLog struct {
	n       atomic.Int64
	mu      sync.Mutex // guards samples
	samples []string
}

func (e *errLog) add(err error) {
	if e.n.Add(1) <= 5 {
		e.mu.Lock()
		e.samples = append(e.samples, err.Error())
		e.mu.Unlock()
	}
}

// workers runs n workers that call op until the deadline, ctx or maxOps ends
// the phase, then waits for them.
func workers(ctx context.Context, n int, deadline time.Time, maxOps int64, op func(w int)) {
	var tickets atomic.Int64
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) && tickets.Add(1) <= maxOps {
				op(w)
			}
		}()
	}
	wg.Wait()
}

// runTunnels measures tunnels/s and set-up times: each op is a fresh
// connection, CONNECT, one echo, close.
func runTunnels(ctx context.Context, c *client, echo *targets, cfg phaseConfig) Phase {
	var errs errLog
	var ok atomic.Int64
	setups := make([][]time.Duration, cfg.Concurrency)
	start := time.Now()
	workers(ctx, cfg.Concurrency, start.Add(cfg.Duration), cfg.MaxOps, func(w int) {
		setup, _, err := c.tunnelOnce(ctx, echo.next())
		if err != nil {
			if ctx.Err() == nil {
				errs.add(err)
			}
			return
		}
		ok.Add(1)
		setups[w] = append(setups[w], setup)
	})
	p := finish(start, ok.Load(), &errs)
	p.setups = slices.Concat(setups...)
	slices.Sort(p.setups)
	p.P50ms = ms(percentile(p.setups, 0.50))
	p.P99ms = ms(percentile(p.setups, 0.99))
	return p
}

// runRequests measures keep-alive absolute-form GETs through the proxy.
func runRequests(ctx context.Context, c *client, web *targets, cfg phaseConfig) Phase {
	tr := &http.Transport{
		Proxy:                 http.ProxyURL(&url.URL{Scheme: "http", Host: c.proxy.addr}),
		DialContext:           c.dial,
		MaxIdleConnsPerHost:   cfg.Concurrency,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: opTimeout,
		DisableCompression:    true,
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: opTimeout}
	var errs errLog
	var ok atomic.Int64
	start := time.Now()
	workers(ctx, cfg.Concurrency, start.Add(cfg.Duration), cfg.MaxOps, func(int) {
		err := getIP(ctx, hc, c.proxy.auth, web.next())
		if err != nil {
			if ctx.Err() == nil {
				errs.add(err)
			}
			return
		}
		ok.Add(1)
	})
	return finish(start, ok.Load(), &errs)
}

// getIP is one op of the requests phase: GET http://target/ip through the
// proxy; the answer must be an exit's egress address.
func getIP(ctx context.Context, hc *http.Client, auth, target string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+target+"/ip", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Proxy-Authorization", auth)
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("GET %s/ip: read body: %w", target, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s/ip: %s (%s)", target, resp.Status, resp.Header.Get("X-Farmgate-Error"))
	}
	// The origin saw an exit's egress IP (127.0.11.x..127.0.14.x), so the
	// request really went through an exit.
	if !bytes.HasPrefix(body, []byte("127.0.1")) {
		return fmt.Errorf("GET %s/ip: origin saw %q, not an egress IP", target, bytes.TrimSpace(body))
	}
	return nil
}

// runBulk measures MB/s: streams each open a tunnel to the bulk origin and
// read size bytes, over and over until the phase ends. Bytes read up to the
// phase end count; an op the phase end cuts is not an error.
func runBulk(ctx context.Context, c *client, bulk *targets, cfg phaseConfig) Phase {
	var errs errLog
	var ops, total atomic.Int64
	start := time.Now()
	end := start.Add(cfg.Duration)
	workers(ctx, cfg.BulkStreams, end, cfg.MaxOps, func(int) {
		n, err := c.bulkOnce(ctx, bulk.next(), cfg.BulkSize, end)
		total.Add(n)
		switch {
		case err == nil:
			ops.Add(1)
		case ctx.Err() != nil:
		case errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(end):
		default:
			errs.add(err)
		}
	})
	p := finish(start, ops.Load(), &errs)
	p.Seconds = min(p.Seconds, cfg.Duration.Seconds())
	p.amount = float64(total.Load()) / 1e6
	p.Rate = p.amount / p.Seconds
	return p
}

// bulkOnce reads size bytes through a new tunnel to target; it stops at end.
func (c *client) bulkOnce(ctx context.Context, target string, size int64, end time.Time) (int64, error) {
	conn, extra, _, _, err := c.connect(ctx, target, time.Now().Add(opTimeout))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(end)
	n := int64(len(extra))
	buf := make([]byte, 256<<10)
	for n < size {
		m, err := conn.Read(buf[:min(int64(len(buf)), size-n)])
		n += int64(m)
		if err != nil {
			return n, fmt.Errorf("read bulk after %d bytes: %w", n, err)
		}
	}
	return n, nil
}

// runIdle measures the memory a process spends per idle tunnel: VmRSS of
// pid once settled, before and after opening n tunnels to the echo origin
// (each has carried one echo, so it is up end to end); the tunnels are
// closed after.
func runIdle(ctx context.Context, c *client, echo *targets, pid int, cfg phaseConfig) (Phase, error) {
	before, err := settledRSS(ctx, pid)
	if err != nil {
		return Phase{}, err
	}
	fdsBefore, err := openFDs(pid)
	if err != nil {
		return Phase{}, err
	}
	var errs errLog
	conns := make([]net.Conn, cfg.IdleTunnels)
	var next atomic.Int64
	start := time.Now()
	// Opening is bounded by the ticket count; each open by opTimeout.
	workers(ctx, cfg.Concurrency, start.Add(60*time.Second), int64(cfg.IdleTunnels), func(int) {
		i := next.Add(1) - 1
		conn, extra, _, _, err := c.connect(ctx, echo.next(), time.Now().Add(opTimeout))
		if err == nil {
			if err = echoOnce(conn, extra); err != nil {
				conn.Close()
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				errs.add(err)
			}
			return
		}
		conn.SetDeadline(time.Time{})
		conns[i] = conn
	})
	var open int64
	for _, conn := range conns {
		if conn != nil {
			open++
		}
	}
	p := finish(start, open, &errs)
	after, err := settledRSS(ctx, pid)
	fdsAfter, ferr := openFDs(pid)
	err = errors.Join(err, ferr)
	for _, conn := range conns {
		if conn != nil {
			conn.Close()
		}
	}
	if err != nil {
		return p, err
	}
	if open > 0 {
		p.Rate = float64(after-before) / float64(open)
		p.FDs = float64(fdsAfter-fdsBefore) / float64(open)
	}
	return p, nil
}

// openFDs counts the descriptors pid has open: sockets, and pipes that
// splicing may hold (kernel memory RSS does not show).
func openFDs(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, fmt.Errorf("count descriptors of pid %d: %w", pid, err)
	}
	return len(ents), nil
}

// settledRSS waits a second, then reads VmRSS (KiB) every 250ms until two
// reads differ by less than 1%, for at most 3 more seconds.
func settledRSS(ctx context.Context, pid int) (int64, error) {
	sleep(ctx, time.Second)
	prev, err := rssKiB(pid)
	if err != nil {
		return 0, err
	}
	for range 12 {
		sleep(ctx, 250*time.Millisecond)
		cur, err := rssKiB(pid)
		if err != nil {
			return 0, err
		}
		if d := cur - prev; d*100 < cur && -d*100 < cur {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func finish(start time.Time, ok int64, errs *errLog) Phase {
	sec := time.Since(start).Seconds()
	return Phase{Ops: ok, Errors: errs.n.Load(), Seconds: sec, Rate: float64(ok) / sec, Samples: errs.samples, amount: float64(ok)}
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
