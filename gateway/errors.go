package gateway

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/internal/dataplane/wire"
	"github.com/farmgate/farmgate/pool"
	"github.com/farmgate/farmgate/upstream"
)

// Errors the gateway itself raises; auth, pool and exit errors are mapped
// below next to them.
var (
	errNoCredentials = errors.New("no proxy credentials")
	errPoolForbidden = errors.New("pool forbidden")
	errBadTarget     = errors.New("bad request target")
	errShuttingDown  = errors.New("gateway shutting down")
	errQuotaExceeded = errors.New("quota exceeded")
	errExpired       = errors.New("customer account expired")
)

// A refusal is one row of the table of what a customer is told when a
// request or tunnel cannot be served: the X-Farmgate-Error reason is its key.
type refusal struct {
	status  int    // HTTP status
	message string // the body's first line
	socks   byte   // SOCKS5 reply code
	// proxyStatus is the RFC 9209 error type in the Proxy-Status header.
	proxyStatus string
	// login: counted in farmgate_auth_failures_total (refused before an
	// exit was picked, for the customer's account or request).
	login bool
}

// refusals is the one table of refusals (DESIGN.md "Errors to customers",
// README "Errors a customer sees"); replyFor maps errors onto it.
var refusals = map[string]refusal{
	"auth_required":           {http.StatusProxyAuthRequired, "proxy authentication required", socksGeneralFailure, "http_request_denied", true},
	"bad_params":              {http.StatusBadRequest, "malformed targeting in the proxy username", socksGeneralFailure, "http_request_error", true},
	"bad_request":             {http.StatusBadRequest, "malformed request", socksGeneralFailure, "http_request_error", false},
	"pool_forbidden":          {http.StatusForbidden, "this account may not use the requested zone", socksNotAllowed, "http_request_denied", true},
	"quota_exceeded":          {http.StatusPaymentRequired, "the account's traffic quota is used up", socksNotAllowed, "http_request_denied", true},
	"rate_limited":            {http.StatusTooManyRequests, "too many requests or failed logins; slow down", socksNotAllowed, "connection_limit_reached", true},
	"too_many_connections":    {http.StatusTooManyRequests, "the account's concurrent connection limit is reached", socksNotAllowed, "connection_limit_reached", true},
	"auth_unavailable":        {http.StatusServiceUnavailable, "customer store unavailable; try again shortly", socksGeneralFailure, "proxy_internal_error", false},
	"no_exit_available":       {http.StatusServiceUnavailable, "no exit matches the requested targeting right now", socksGeneralFailure, "proxy_internal_error", false},
	"destination_forbidden":   {http.StatusForbidden, "the destination is not allowed", socksNotAllowed, "destination_ip_prohibited", false},
	"destination_unreachable": {http.StatusBadGateway, "the destination could not be reached", socksHostUnreachable, "destination_unavailable", false},
	"destination_timeout":     {http.StatusGatewayTimeout, "the destination did not answer in time", socksTTLExpired, "connection_timeout", false},
	"exit_failed":             {http.StatusBadGateway, "the exit failed", socksGeneralFailure, "proxy_internal_error", false},
	"exit_timeout":            {http.StatusGatewayTimeout, "the exit did not answer in time", socksTTLExpired, "connection_timeout", false},
	// Never written to a customer (they left): the access log's 499.
	reasonClientClosed: {499, "the customer left before the answer", socksGeneralFailure, "connection_terminated", false},
}

// reply is what a customer is told when a request cannot be served.
type reply struct {
	status     int
	reason     string        // X-Farmgate-Error, a key of refusals
	retryAfter time.Duration // Retry-After, when known
	detail     string        // said after the message, when it helps the customer
}

// refuse returns the reply for reason, which must be a key of refusals.
func refuse(reason string) reply {
	return reply{status: refusals[reason].status, reason: reason}
}

// replyFor is the one mapping of errors onto refusals. Anything unknown is
// the exit's fault; what came from the customer's side is typed as such
// (customerError).
func replyFor(err error) reply {
	var ee *upstream.ExitError
	var ce *customerError
	switch {
	case errors.Is(err, errNoCredentials), errors.Is(err, auth.ErrBadCredentials):
		return refuse("auth_required")
	case errors.Is(err, auth.ErrLoginThrottled):
		r := refuse("rate_limited")
		r.retryAfter = time.Minute
		return r
	case errors.Is(err, auth.ErrRateLimited):
		r := refuse("rate_limited")
		r.retryAfter = retryAfter(err)
		return r
	case errors.Is(err, auth.ErrTooManyConnections):
		return refuse("too_many_connections")
	case errors.Is(err, auth.ErrStoreUnavailable):
		r := refuse("auth_unavailable")
		r.retryAfter = 5 * time.Second
		return r
	case errors.Is(err, errQuotaExceeded), errors.Is(err, auth.ErrQuotaExceeded):
		return refuse("quota_exceeded")
	case errors.Is(err, auth.ErrBadParams):
		// The grammar's error names the key and what it accepts.
		r := refuse("bad_params")
		r.detail = strings.TrimSuffix(err.Error(), ": "+auth.ErrBadParams.Error())
		return r
	case errors.Is(err, errBadTarget), errors.Is(err, upstream.ErrBadRequest):
		return refuse("bad_request")
	case errors.As(err, &ce), errors.As(err, &ee) && ee.CustomerFault():
		return refuse("bad_request")
	case errors.Is(err, errPoolForbidden):
		return refuse("pool_forbidden")
	case errors.Is(err, pool.ErrNoExit), errors.Is(err, errShuttingDown):
		return refuse("no_exit_available")
	case errors.As(err, &ee) && ee.DestinationFault():
		if _, ok := refusals[ee.Reason]; ok {
			return refuse(ee.Reason)
		}
		return refuse("destination_unreachable")
	case isTimeout(err):
		return refuse("exit_timeout")
	default:
		return refuse("exit_failed")
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fault is whose doing a failed attempt through an exit was.
type fault int

const (
	// exitFault: worth a mark against the exit and a try on another.
	exitFault fault = iota
	// destinationFault: the exit did its part; neutral for its health.
	destinationFault
	// customerFault: a malformed request or body, or a customer who
	// stopped sending; the same through any exit, and no exit's doing.
	customerFault
)

// faultOf says whose doing err, from an attempt through an exit, was.
// Anything unknown while talking to the exit is the exit's; what came from
// the customer's side says so with its type.
func faultOf(err error) fault {
	var ee *upstream.ExitError
	var ce *customerError
	switch {
	case errors.As(err, &ce), errors.Is(err, errBadTarget):
		return customerFault
	case errors.As(err, &ee) && ee.CustomerFault():
		return customerFault
	case errors.As(err, &ee) && ee.DestinationFault():
		return destinationFault
	}
	return exitFault
}

// customerError is an error reading the customer's side of a request while
// it is forwarded: its body, which may be malformed (a chunk size such as
// "zz", "-1" or "0x10") or cut short (the customer closed, reset, or went
// silent past IdleTimeout). net/http's Transport hands back the error of a
// request body's Read as it is, so forward can tell it from the exit's.
type customerError struct{ err error }

func (e *customerError) Error() string { return "read customer's request body: " + e.err.Error() }

func (e *customerError) Unwrap() error { return e.err }

// left reports whether the customer went away (closed, reset, fell silent)
// rather than sent something malformed.
func (e *customerError) left() bool {
	return errors.Is(e.err, io.ErrUnexpectedEOF) || errors.Is(e.err, io.EOF) || errors.Is(e.err, net.ErrClosed) ||
		errors.Is(e.err, syscall.ECONNRESET) || errors.Is(e.err, syscall.EPIPE) || isTimeout(e.err)
}

// customerLeft reports whether err says the customer went away while their
// request was forwarded.
func customerLeft(err error) bool {
	var ce *customerError
	return errors.As(err, &ce) && ce.left()
}

// clientClosed is what the access log says of a request whose customer
// left before the answer: nothing failed and nobody reads the reply (nginx
// logs these as 499 too).
var clientClosed = refuse(reasonClientClosed)

const reasonClientClosed = "client_closed"

// body is what the reply says, a line of text.
func (r reply) body() string {
	msg := refusals[r.reason].message
	if r.detail != "" {
		msg += ": " + r.detail
	}
	return msg + "\n"
}

// proxyStatus is the reply's Proxy-Status (RFC 9209) value.
func (r reply) proxyStatus() string {
	return proxyName + "; error=" + refusals[r.reason].proxyStatus + "; details=" + strconv.Quote(r.reason)
}

// proxyName names the gateway in Proxy-Status.
const proxyName = "farmgate"

// header is the reply's header fields.
func (r reply) header() http.Header {
	h := make(http.Header, 6)
	h.Set(wire.HeaderError, r.reason)
	h.Set("Proxy-Status", r.proxyStatus())
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="farmgate"`)
	}
	if r.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retrySeconds(r.retryAfter)))
	}
	return h
}

// response builds the reply: what every HTTP refusal is written from.
func (r reply) response(req *http.Request) *http.Response {
	body := r.body()
	return &http.Response{
		StatusCode:    r.status,
		Status:        strconv.Itoa(r.status) + " " + http.StatusText(r.status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        r.header(),
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// write writes the reply on a connection the gateway owns (a refused
// CONNECT); closing says the connection ends after it.
func (r reply) write(w io.Writer, closing bool) error {
	resp := r.response(nil)
	resp.Close = closing
	return resp.Write(w)
}

// retryAfter digs the wait out of a rate-limit error, if it carries one.
func retryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return ra.RetryAfter()
	}
	return time.Second
}

// retrySeconds rounds a wait up to whole seconds, at least 1.
func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}
