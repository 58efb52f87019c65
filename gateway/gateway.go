package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/internal/dataplane/accept"
	"github.com/farmgate/farmgate/internal/dataplane/sockopt"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// Authenticator checks a customer's credentials from a client address
// (auth.FileStore and auth.RedisStore).
type Authenticator interface {
	AuthenticateFrom(ctx context.Context, user, password string, client netip.Addr) (*auth.Customer, error)
}

// Gateway serves customers on one or more listeners.
type Gateway struct {
	cfg    Config
	authn  atomic.Pointer[Authenticator]
	pool   *pool.Pool
	logger *slog.Logger

	exits     *upstream.Set
	tunnels   sync.Map // *tunnel → struct{}: live CONNECT tunnels, for the watcher
	meter     Meter
	metrics   *metrics
	activity  *activity
	watchStop chan struct{}
	watchDone chan struct{}
	stopOnce  sync.Once
	// watchStart starts the watcher with the first Serve (or, in a
	// Shutdown before any, marks it done).
	watchStart sync.Once

	ctx    context.Context // cancelled by Shutdown's deadline: cuts live tunnels
	cancel context.CancelFunc

	mu        sync.Mutex // guards listeners, conns, idle and closing
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // customer connections and the exit sides of their tunnels
	idle      map[net.Conn]struct{} // of those, kept-alive ones waiting for their next request
	closing   bool
	wg        sync.WaitGroup // serveConn goroutines
	bg        sync.WaitGroup // background work (revocations): Shutdown waits for it
}

// goBackground runs f in a goroutine Shutdown waits for, unless the
// gateway is shutting down already; f should end with g.ctx.
func (g *Gateway) goBackground(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return
	}
	g.bg.Add(1)
	go func() {
		defer g.bg.Done()
		f()
	}()
}

// New builds a gateway; it starts nothing: Serve serves, Shutdown stops.
func New(cfg Config, a Authenticator, p *pool.Pool, logger *slog.Logger) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if a == nil || p == nil {
		return nil, errors.New("gateway: authenticator and pool are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{
		cfg:       cfg.withDefaults(),
		pool:      p,
		logger:    logger.With("component", "gateway"),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
		idle:      make(map[net.Conn]struct{}),
	}
	g.authn.Store(&a)
	g.exits = upstream.NewSet(upstream.Config{Token: g.cfg.ExitToken, ExitTLS: g.cfg.ExitTLS, DialTimeout: g.cfg.ExitDialTimeout,
		ReplyTimeout: g.cfg.ExitReplyTimeout, MaxIdle: g.cfg.MaxIdleExitConns, Metrics: g.cfg.Metrics})
	p.OnLeave(g.exits.Drop)
	g.meter = g.cfg.Meter
	g.activity = newActivity(nil)
	g.metrics = newMetrics(g.cfg.Metrics, p, g.activity, g.cfg.MetricsCustomers)
	g.watchStop, g.watchDone = make(chan struct{}), make(chan struct{})
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g, nil
}

// Listen opens a customer listener on addr: customers speak first, so it
// defers accepts until their first bytes arrive and sends no keepalive
// probes (see sockopt.Listen).
func Listen(addr string) (net.Listener, error) {
	return sockopt.Listen(context.Background(), addr)
}

// Serve accepts customers on ln until Shutdown. It returns nil after
// Shutdown and the accept error otherwise.
func (g *Gateway) Serve(ln net.Listener) error {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		ln.Close()
		return nil
	}
	g.listeners[ln] = struct{}{}
	g.mu.Unlock()
	g.watchStart.Do(func() { go g.watch() }) // owned by the gateway: ends in Shutdown
	defer func() {
		g.mu.Lock()
		delete(g.listeners, ln)
		g.mu.Unlock()
	}()
	err := accept.Loop(ln, g.logger, g.isClosing, func(c net.Conn) bool {
		if !g.track(c) {
			c.Close()
			return false
		}
		g.wg.Add(1)
		go g.serveConn(c)
		return true
	})
	if err != nil {
		return fmt.Errorf("accept customers: %w", err)
	}
	return nil
}

func (g *Gateway) isClosing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closing
}

// track lists c's socket for Shutdown to close; a customer's TLS
// connection is listed by its socket, which it closes without waiting.
func (g *Gateway) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.conns[socketOf(c)] = struct{}{}
	return true
}

func (g *Gateway) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, socketOf(c))
	g.mu.Unlock()
}

// serveConn serves one customer connection: SOCKS5 when its first byte
// says so (0x05), HTTP otherwise (CONNECT and absolute-form requests); a
// TLS handshake (0x16) first, when the gateway has a certificate.
func (g *Gateway) serveConn(c net.Conn) {
	defer g.wg.Done()
	handedOff := false // to the HTTP server or to a tunnel's relay
	defer func() {
		if r := recover(); r != nil {
			g.logger.Error("panic serving customer", "panic", r, "remote", c.RemoteAddr().String())
		}
		if !handedOff {
			c.Close()
			g.untrack(c)
		}
	}()
	c.SetReadDeadline(time.Now().Add(g.cfg.ReadHeaderTimeout))
	in := &counter{r: c}
	br := readers.Get().(*bufio.Reader)
	br.Reset(in)
	first, err := br.Peek(1)
	if err != nil {
		g.putBuf(br)
		return
	}
	if first[0] == tlsHandshake && g.cfg.CustomerTLS != nil {
		tc, err := g.handshake(c, br)
		if err != nil {
			g.logger.Debug("customer tls handshake failed", "remote", c.RemoteAddr().String(), "err", err)
			return
		}
		c = tc
		in = &counter{r: c}
		br.Reset(in)
		if first, err = br.Peek(1); err != nil {
			g.putBuf(br)
			return
		}
	}
	if first[0] == socksVersion {
		handedOff = g.serveSOCKS(c, br)
		return
	}
	if head, err := br.Peek(8); err == nil && string(head) == "CONNECT " {
		// Most connections carry one CONNECT: it needs none of what
		// serveRequests sets up for a series of requests.
		var keep bool
		if handedOff, keep = g.readConnect(c, br); keep {
			handedOff = g.serveRequests(c, br, in, false) // refused with 407: the next may carry credentials
		}
		return
	}
	handedOff = g.serveRequests(c, br, in, true)
}

// readers holds the readers of customers' request heads: a connection holds
// one only while it reads a head.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

func (g *Gateway) putBuf(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

// Shutdown stops accepting, lets live tunnels and requests finish until ctx
// is done, then cuts what is left. It is idempotent.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.closing = true
	for ln := range g.listeners {
		ln.Close()
	}
	for c := range g.idle {
		c.Close()
		delete(g.idle, c)
	}
	g.mu.Unlock()

	tunnelsDone := make(chan struct{})
	go func() { g.wg.Wait(); close(tunnelsDone) }()

	var err error
	select {
	case <-tunnelsDone:
	case <-ctx.Done():
		err = fmt.Errorf("drain tunnels: %w", ctx.Err())
		g.cancel()
		g.mu.Lock()
		for c := range g.conns {
			c.Close()
		}
		g.mu.Unlock()
		<-tunnelsDone
	}
	g.cancel()
	g.bg.Wait()
	// A gateway that never served has no watcher to wait for.
	g.watchStart.Do(func() { close(g.watchDone) })
	g.stopOnce.Do(func() { close(g.watchStop) })
	<-g.watchDone
	g.exits.Close()
	return err
}

// CheckExit is the active health check of exit e (pool.Config.Probe), with
// probeURL fetched through it when not empty: see upstream.Set.Check.
func (g *Gateway) CheckExit(ctx context.Context, e *pool.Exit, probeURL string) error {
	return g.exits.Check(ctx, e, probeURL)
}
