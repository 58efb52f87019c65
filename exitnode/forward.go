package exitnode

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/stream"
	"github.com/farmgate/farmgate/internal/dataplane/wire"

	"github.com/elazarl/goproxy"
)

// route is how the exit reaches destinations from one egress IP: a checked
// dialer bound to it and an http.Transport whose pool holds only connections
// from that IP.
type route struct {
	local     netip.Addr // invalid: OS default source
	dialer    *destDialer
	transport *http.Transport
}

var _ goproxy.RoundTripper = (*route)(nil)

func newRoute(cfg Config, local netip.Addr) *route {
	d := &destDialer{
		resolver: cfg.Resolver,
		allow:    cfg.AllowDest,
		timeout:  cfg.DialTimeout,
		local:    local,
	}
	return &route{
		local:  local,
		dialer: d,
		transport: &http.Transport{
			Proxy:               nil, // never chain to an environment proxy
			DialContext:         d.DialContext,
			DisableCompression:  true, // pass Accept-Encoding and bodies through untouched
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: cfg.DialTimeout,
			// An origin slower than this gets the customer 504
			// destination_timeout from us, before the gateway's own wait
			// (ExitReplyTimeout, 15 s) ends and blames the exit.
			ResponseHeaderTimeout: cfg.DialTimeout,
			ExpectContinueTimeout: time.Second,
		},
	}
}

// RoundTrip sends req from this route's egress IP.
func (rt *route) RoundTrip(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
	return rt.transport.RoundTrip(req)
}

// routeKey carries the chosen *route from ServeHTTP to the goproxy handlers.
type routeKey struct{}

// newForwardProxy builds the goproxy server for absolute-form HTTP. CONNECT
// never reaches it (see serveConnect); it rejects one should it ever.
func (s *Server) newForwardProxy() *goproxy.ProxyHttpServer {
	p := goproxy.NewProxyHttpServer()
	p.Logger = goproxyLogger{s.log}
	p.Verbose = false
	p.KeepAcceptEncoding = true
	p.KeepDestinationHeaders = false
	p.ConnectDial = nil
	p.Tr = s.allRoutes()[0].transport
	p.OnRequest().HandleConnect(goproxy.AlwaysReject)
	p.OnRequest().DoFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		rt, ok := req.Context().Value(routeKey{}).(*route)
		if !ok {
			return req, errorResponse(req, fmt.Errorf("forward %s: no route: %w", req.Host, errBadTarget))
		}
		ctx.RoundTripper = rt
		cleanRequestHeader(req.Header)
		return req, nil
	})
	p.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		if resp == nil {
			err := ctx.Error
			if err == nil {
				err = fmt.Errorf("forward %s: no response: %w", ctx.Req.Host, errUnreachable)
			}
			if ctx.Req.Context().Err() != nil {
				// The gateway left (its customer did): nothing was refused.
				s.log.Debug("request abandoned", "method", ctx.Req.Method, "host", ctx.Req.Host, "remote", ctx.Req.RemoteAddr)
				return errorResponse(ctx.Req, err)
			}
			status, reason := reply(err)
			s.log.Info("request refused", "reason", reason, "status", status,
				"method", ctx.Req.Method, "host", ctx.Req.Host, "remote", ctx.Req.RemoteAddr, "err", err)
			return errorResponse(ctx.Req, err)
		}
		cleanResponseHeader(resp)
		return resp
	})
	return p
}

// serveForward relays one absolute-form request through goproxy from the
// chosen egress IP.
func (s *Server) serveForward(w http.ResponseWriter, r *http.Request) {
	// The farm's target rules, which gateways apply to their customers
	// first: what is refused here is the customer's mistake.
	if _, err := wire.URLTarget(r.URL); err != nil {
		s.refuse(w, r, fmt.Errorf("forward: %w: %w", errBadTarget, err))
		return
	}
	rt, err := s.pickRoute(r)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	if err := s.acquire(); err != nil {
		s.refuse(w, r, err)
		return
	}
	defer s.release()
	ctx := context.WithValue(r.Context(), routeKey{}, rt)
	// Let the origin's response stream back while the request body is
	// still arriving (net/http otherwise stops reading the body once the
	// response starts).
	_ = http.NewResponseController(w).EnableFullDuplex()
	s.proxy.ServeHTTP(stream.NewWriter(w), r.WithContext(ctx))
}

// errorResponse is the response goproxy relays when the exit refuses or fails
// a forwarded request.
func errorResponse(req *http.Request, err error) *http.Response {
	status, reason := reply(err)
	body := reason + "\n"
	return &http.Response{
		Status:     strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode: status,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			HeaderError:              {reason},
			"Content-Type":           {"text/plain; charset=utf-8"},
			"X-Content-Type-Options": {"nosniff"},
		},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// removeHopHeaders removes hop-by-hop headers, those named in Connection, and
// every X-Farmgate-* header; it returns an Upgrade asked for.
func removeHopHeaders(h http.Header) (upgrade string) { return wire.RemoveHop(h) }

// cleanRequestHeader prepares a forwarded request's header: hop-by-hop and
// X-Farmgate-* headers go, "Te: trailers" and an upgrade request stay, and an
// absent User-Agent stays absent.
func cleanRequestHeader(h http.Header) {
	trailers := false
	for _, v := range h.Values("Te") {
		if strings.Contains(strings.ToLower(v), "trailers") {
			trailers = true
		}
	}
	if up := removeHopHeaders(h); up != "" {
		h.Set("Connection", "Upgrade")
		h.Set("Upgrade", up)
	}
	if trailers {
		h.Set("Te", "trailers")
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // net/http then sends none
	}
}

// cleanResponseHeader strips hop-by-hop and X-Farmgate-* headers from an
// origin response, keeping a 101's upgrade.
func cleanResponseHeader(resp *http.Response) {
	up := removeHopHeaders(resp.Header)
	if resp.StatusCode == http.StatusSwitchingProtocols && up != "" {
		resp.Header.Set("Connection", "Upgrade")
		resp.Header.Set("Upgrade", up)
	}
	for k := range resp.Trailer {
		if len(k) >= len("X-Farmgate-") && strings.EqualFold(k[:len("X-Farmgate-")], "X-Farmgate-") {
			delete(resp.Trailer, k)
		}
	}
}

// goproxyLogger sends goproxy's log lines to slog at debug level.
type goproxyLogger struct{ l *slog.Logger }

func (g goproxyLogger) Printf(format string, v ...any) {
	g.l.Debug("goproxy: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}
