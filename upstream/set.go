package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
	"github.com/farmgate/farmgate/pool"
)

// Config holds what a Set needs to reach exits. Zero durations and counts
// are not replaced: start from DefaultConfig.
type Config struct {
	// Token authenticates the gateway to farmgate exits.
	Token string
	// ExitTLS returns the mutual-TLS configuration to dial the farmgate
	// exit of the given id with (farmtls.Holder.ClientConfig): it presents
	// the gateway's certificate and accepts only an exit certificate of the
	// farm that names that id. It is asked once per exit and address.
	// Default nil: plaintext links (--insecure-links).
	ExitTLS func(exitID string) *tls.Config
	// UpstreamRoots are the CAs an https:// third-party upstream's
	// certificate must chain to. Default nil: the system's roots.
	UpstreamRoots *x509.CertPool
	// DialTimeout bounds the TCP connect to an exit. Default 5s.
	DialTimeout time.Duration
	// ReplyTimeout bounds the wait for an exit's answer to CONNECT or to a
	// forwarded request's headers, which includes the exit's own dial of
	// the destination. Default 15s.
	ReplyTimeout time.Duration
	// MaxIdle is how many idle keep-alive connections, idle links and idle
	// tunnels to origins (at most 128 of those) are kept per exit.
	// Default 256.
	MaxIdle int
	// Metrics is where the link and origin-tunnel series are registered.
	// Default nil: counted but not exported.
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{DialTimeout: 5 * time.Second, ReplyTimeout: 15 * time.Second, MaxIdle: 256}
}

// Set keeps the way to reach each exit, built on first use and rebuilt when
// the exit's address changes. Its methods are safe for concurrent use.
type Set struct {
	cfg Config
	m   *metrics

	exits sync.Map   // exit id → *Exit
	mu    sync.Mutex // serialises building Exits
	// idleOrigins counts the idle tunnels to origins through every exit.
	idleOrigins atomic.Int64
}

// NewSet returns an empty Set.
func NewSet(cfg Config) *Set {
	return &Set{cfg: cfg, m: newMetrics(cfg.Metrics)}
}

// For returns the way to reach e, building it on first use.
func (s *Set) For(e *pool.Exit) (*Exit, error) {
	if x, ok := s.cached(e); ok {
		return x, nil
	}
	// One builder at a time: two callers that both missed (a probe and a
	// customer's first tunnel) would each build one, and the second Swap
	// would close the first one's pools under the tunnel using it.
	s.mu.Lock()
	defer s.mu.Unlock()
	if x, ok := s.cached(e); ok {
		return x, nil
	}
	x, err := s.build(e.ID, e.Addr)
	if err != nil {
		return nil, fmt.Errorf("exit %s: %w", e.ID, err)
	}
	if old, loaded := s.exits.Swap(e.ID, x); loaded {
		old.(*Exit).closeIdle()
	}
	return x, nil
}

func (s *Set) cached(e *pool.Exit) (*Exit, bool) {
	if v, ok := s.exits.Load(e.ID); ok {
		if x := v.(*Exit); x.addr == e.Addr {
			return x, true
		}
	}
	return nil, false
}

// Drop lets go of what is kept for exit id (idle links, keep-alive
// connections, tunnels to origins): the exit left the farm, drains or was
// found down, and a draining exit waits for every tunnel it carries, idle
// ones included.
func (s *Set) Drop(id string) {
	if v, ok := s.exits.LoadAndDelete(id); ok {
		v.(*Exit).closeIdle()
	}
}

// Sweep closes the idle connections to exits that nobody used for a while.
// An exit closes them on its side after its own idle timeout; without the
// sweep, those of an exit that gets no more traffic would wait in
// CLOSE_WAIT, each holding a descriptor.
func (s *Set) Sweep(now time.Time) {
	s.exits.Range(func(_, v any) bool {
		v.(*Exit).sweep(now)
		return true
	})
}

// Close closes every idle connection to every exit, and waits for the
// tunnels to origins that were ending (a second at most).
func (s *Set) Close() {
	s.exits.Range(func(_, v any) bool {
		x := v.(*Exit)
		x.closeIdle()
		if x.origins != nil {
			x.origins.retiring.Wait()
		}
		return true
	})
}

// Tunnel opens a tunnel through the exit to target (host:port), from
// egress when it is valid. A *LinkTunnel (to a farmgate exit) carries its
// bytes framed: relay them with its SendBytes, Send and Receive.
func (x *Exit) Tunnel(ctx context.Context, target string, egress netip.Addr) (net.Conn, error) {
	return x.dialer.DialContext(withEgress(ctx, egress), "tcp", target)
}

// RoundTrip sends req, an absolute-form request, through the exit from
// egress and returns the answer: http:// ones (and all through a SOCKS5
// exit) to the origin through a tunnel across the exit, kept for the next
// request from the same egress IP to the same origin; others to the exit's
// HTTP proxy.
// An answer the exit refused with is an *ExitError; errors of the exchange
// with an origin through a tunnel are the destination's (an ExitError with
// a destination_ reason). req.Header is changed for this exit.
func (x *Exit) RoundTrip(req *http.Request, egress netip.Addr) (*http.Response, error) {
	out := req.WithContext(withEgress(req.Context(), egress))
	// The customer's Connection: close is about their connection
	// (hop-by-hop), as with net/http's ReverseProxy: the connection to the
	// exit, and the tunnel to the origin, stay for the next request.
	out.Close = false
	if _, ok := out.Header["User-Agent"]; !ok {
		// net/http would add its own; a customer who sent none sends none.
		out.Header["User-Agent"] = []string{""}
	}
	// The header is the customer's request's, shared by every attempt:
	// what one exit needs must not reach the next exit's origin.
	toOrigin := x.origins != nil && (out.URL.Scheme == "http" || !x.farmgate)
	if x.proxyAuth != "" && !toOrigin {
		out.Header.Set("Proxy-Authorization", x.proxyAuth)
	} else {
		out.Header.Del("Proxy-Authorization")
	}
	if x.farmgate && egress.IsValid() && !toOrigin {
		out.Header.Set(wire.HeaderEgress, egress.String())
	} else {
		out.Header.Del(wire.HeaderEgress)
	}
	if toOrigin {
		return x.origins.RoundTrip(out, egress)
	}
	resp, err := x.client.RoundTrip(out)
	if err == nil && resp.Header.Get(wire.HeaderError) != "" && resp.StatusCode >= 400 {
		err = &ExitError{Status: resp.StatusCode, Reason: resp.Header.Get(wire.HeaderError)}
		resp.Body.Close()
		resp = nil
	}
	return resp, err
}

// metrics are the Set's Prometheus series.
type metrics struct {
	links   *prometheus.CounterVec
	origins *prometheus.CounterVec
	ending  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		links: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "farmgate_exit_links_total",
			Help: "Tunnels to farmgate exits by the connection they went over: a kept link, a new connection, " +
				"or a kept link the exit had closed meanwhile (replaced by a new one, unseen by the customer).",
		}, []string{"link"}),
		origins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "farmgate_origin_tunnels_total",
			Help: "http:// requests sent to the origin through a tunnel across a farmgate exit, by the tunnel " +
				"they went over: one kept from an earlier request (same egress IP and origin) or a new one.",
		}, []string{"tunnel"}),
		ending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "farmgate_origin_tunnels_ending",
			Help: "Tunnels to origins the gateway is ending on a kept link, waiting for the exit's end before the link " +
				"carries another tunnel (at most a second each).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.links, m.origins, m.ending)
	}
	return m
}
