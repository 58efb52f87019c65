package exitnode

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/elazarl/goproxy"

	"github.com/farmgate/farmgate/internal/dataplane/handoff"
	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// InfoPath is the origin-form path a gateway GETs (with its token) to learn
// the exit's Info.
const InfoPath = wire.InfoPath

// Server is one exit node. Create it with New, run it with Serve, stop it with
// Shutdown. It is an http.Handler; Serve wires it into an http.Server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	tokenHash [sha256.Size]byte

	// routes holds one route per egress IP, in cfg.Egress order; byIP indexes
	// them. def is the route used when cfg.Egress is empty (OS default source).
	routes []*route
	byIP   map[netip.Addr]*route
	def    *route

	proxy *goproxy.ProxyHttpServer
	srv   *http.Server

	baseCtx    context.Context    // parent of every request context; cancelled by cut
	cancelBase context.CancelFunc // cancels baseCtx

	randMu sync.Mutex // guards rnd
	rnd    *rand.Rand

	httpLn    *handoff.Listener // what serveConn does not serve goes to srv through it
	startHTTP sync.Once         // the first Serve starts srv on httpLn

	mu        sync.Mutex // guards the fields below and wg.Add
	inUse     int
	closing   bool
	cutting   bool
	tunnels   map[*tunnel]struct{}
	listeners map[net.Listener]struct{}
	reading   map[net.Conn]struct{} // connections whose CONNECT head is being read
	idleLinks map[net.Conn]struct{} // links waiting for their next CONNECT
	wg        sync.WaitGroup        // one count per held slot (tunnel or in-flight request)

	drained chan struct{} // closed when Shutdown's drain has finished
}

var _ http.Handler = (*Server)(nil)

// New validates cfg, fills in defaults and returns a Server ready to Serve.
// logger may be nil (no logging).
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "exitnode", "exit_id", cfg.ID)
	s := &Server{
		cfg:       cfg,
		log:       logger,
		tokenHash: sha256.Sum256([]byte(cfg.Token)),
		byIP:      make(map[netip.Addr]*route, len(cfg.Egress)),
		rnd:       cfg.Rand,
		tunnels:   make(map[*tunnel]struct{}),
		listeners: make(map[net.Listener]struct{}),
		reading:   make(map[net.Conn]struct{}),
		idleLinks: make(map[net.Conn]struct{}),
		httpLn:    handoff.NewListener(),
		drained:   make(chan struct{}),
	}
	if s.rnd == nil {
		s.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	for _, ip := range cfg.Egress {
		rt := newRoute(cfg, ip)
		s.routes = append(s.routes, rt)
		s.byIP[ip] = rt
	}
	if len(s.routes) == 0 {
		s.def = newRoute(cfg, netip.Addr{})
	}
	s.proxy = s.newForwardProxy()
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return s.baseCtx },
	}
	return s, nil
}

// Shutdown stops accepting connections and new requests (they get 503
// exit_busy), lets live tunnels and in-flight requests finish until ctx is
// done, then cuts them. It is idempotent and safe to call concurrently; every
// call returns once the exit is drained, with an error if ctx ended first.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closing
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.idleLinks {
		c.Close() // as an HTTP server closes idle keep-alive connections
	}
	s.mu.Unlock()
	if first {
		s.log.Info("exit shutting down", "active", s.ActiveTunnels())
		go s.drain()
	}
	select {
	case <-s.drained:
		return nil
	case <-ctx.Done():
		s.cut()
		<-s.drained
		return fmt.Errorf("shutdown exit %s: cut live tunnels: %w", s.cfg.ID, ctx.Err())
	}
}

// drain runs once, owned by the first Shutdown: it waits for the HTTP server
// to close its listeners and finish in-flight requests, then for every slot
// to be released, and closes s.drained. cut makes it finish promptly.
func (s *Server) drain() {
	defer close(s.drained)
	_ = s.srv.Shutdown(context.Background()) // returns once connections are idle or closed (cut closes them)
	s.wg.Wait()
	for _, rt := range s.allRoutes() {
		rt.transport.CloseIdleConnections()
	}
	s.cancelBase()
}

// cut closes every connection: hijacked tunnels, HTTP connections, and
// cancels dials in progress.
func (s *Server) cut() {
	s.mu.Lock()
	s.cutting = true
	live := make([]*tunnel, 0, len(s.tunnels))
	for t := range s.tunnels {
		live = append(live, t)
	}
	for c := range s.reading {
		c.Close()
	}
	s.mu.Unlock()
	s.cancelBase()
	_ = s.srv.Close()
	for _, t := range live {
		t.close()
	}
	if len(live) > 0 {
		s.log.Warn("exit shutdown deadline: tunnels cut", "tunnels", len(live))
	}
}

// Info reports the exit's metadata.
func (s *Server) Info() Info {
	return Info{
		ID:         s.cfg.ID,
		DC:         s.cfg.DC,
		Pool:       s.cfg.Pool,
		Country:    s.cfg.Country,
		City:       s.cfg.City,
		Egress:     append([]netip.Addr{}, s.cfg.Egress...),
		MaxTunnels: s.cfg.MaxTunnels,
		Version:    Version,
	}
}

// ActiveTunnels returns the number of slots in use: live CONNECT tunnels
// (including those being dialled) plus in-flight forwarded HTTP requests. It
// is what MaxTunnels bounds.
func (s *Server) ActiveTunnels() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse
}

// acquire takes a slot, or fails with errBusy at MaxTunnels or when shutting
// down. Every successful acquire must be paired with release.
func (s *Server) acquire() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return fmt.Errorf("acquire slot: shutting down: %w", errBusy)
	}
	if s.inUse >= s.cfg.MaxTunnels {
		return fmt.Errorf("acquire slot: %d in use: %w", s.inUse, errBusy)
	}
	s.inUse++
	s.wg.Add(1)
	return nil
}

func (s *Server) release() {
	s.mu.Lock()
	s.inUse--
	s.mu.Unlock()
	s.wg.Done()
}

// ServeHTTP authenticates the gateway, then serves CONNECT, absolute-form
// HTTP, or the info and health endpoints.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		s.refuse(w, r, errUnauthorized)
		return
	}
	r.Header.Del("Proxy-Authorization")
	switch {
	case r.Method == http.MethodConnect:
		s.serveConnect(w, r)
	case r.URL.IsAbs():
		s.serveForward(w, r)
	case r.URL.Path == InfoPath && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.serveInfo(w)
	case r.URL.Path == HealthPath && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.serveHealth(w, r)
	default:
		s.refuse(w, r, fmt.Errorf("serve %s %s: not a proxy request: %w", r.Method, r.URL.Path, errBadTarget))
	}
}

// authorized reports whether r carries "Proxy-Authorization: Bearer <token>".
func (s *Server) authorized(r *http.Request) bool {
	return s.tokenOK(r.Header.Values("Proxy-Authorization"))
}

// tokenOK reports whether the Proxy-Authorization values are exactly one
// "Bearer <token>". The comparison is constant-time (over SHA-256 digests,
// so the token's length does not leak either).
func (s *Server) tokenOK(vals []string) bool {
	if len(vals) != 1 {
		return false
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1
}

// pickRoute strips X-Farmgate-Egress from r and returns the route of the IP
// it names, a random route when absent, or the OS-default route when the exit
// has no egress IPs.
func (s *Server) pickRoute(r *http.Request) (*route, error) {
	vals := r.Header.Values(HeaderEgress)
	r.Header.Del(HeaderEgress)
	return s.route(vals)
}

// route returns the route of the egress IP named by the X-Farmgate-Egress
// values, a random route when there are none, or the OS-default route when
// the exit has no egress IPs.
func (s *Server) route(vals []string) (*route, error) {
	if len(vals) == 0 {
		if len(s.routes) == 0 {
			return s.def, nil
		}
		s.randMu.Lock()
		i := s.rnd.IntN(len(s.routes))
		s.randMu.Unlock()
		return s.routes[i], nil
	}
	return s.routeFor(vals)
}

// routeFor returns the route of the egress IP named by the header values.
func (s *Server) routeFor(vals []string) (*route, error) {
	if len(vals) != 1 {
		return nil, fmt.Errorf("parse egress: %d values: %w", len(vals), errBadEgress)
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(vals[0]))
	if err != nil {
		return nil, fmt.Errorf("parse egress %q: %w", vals[0], errBadEgress)
	}
	rt, ok := s.byIP[ip.Unmap()]
	if !ok {
		return nil, fmt.Errorf("egress %s: not an egress IP of this exit: %w", ip, errBadEgress)
	}
	return rt, nil
}

func (s *Server) allRoutes() []*route {
	if s.def != nil {
		return []*route{s.def}
	}
	return s.routes
}

func (s *Server) serveInfo(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Info())
}

// refuse answers r with the status and X-Farmgate-Error reason of err, and
// logs one line. A refused CONNECT closes the connection, since bytes the
// client pipelined after it must not be read as a request.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	status, reason := reply(err)
	s.log.Info("request refused", "reason", reason, "status", status,
		"method", r.Method, "host", r.Host, "remote", r.RemoteAddr, "err", err)
	h := w.Header()
	h.Set(HeaderError, reason)
	if r.Method == http.MethodConnect {
		h.Set("Connection", "close")
	}
	if status == http.StatusProxyAuthRequired {
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, reason+"\n")
}
