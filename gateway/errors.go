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

// reply is what a customer is told when a request cannot be served.
type reply struct {
	status     int
	reason     string        // X-Farmgate-Error
	retryAfter time.Duration // Retry-After, when known
}

// replyFor is the one table that maps errors to customer-facing statuses
// (DESIGN.md "Errors to customers"). Anything unknown is the exit's fault;
// what came from the customer's side is typed as such (customerError).
func replyFor(err error) reply {
	var ee *upstream.ExitError
	var ce *customerError
	switch {
	case errors.Is(err, errNoCredentials), errors.Is(err, auth.ErrBadCredentials):
		return reply{status: http.StatusProxyAuthRequired, reason: "auth_required"}
	case errors.Is(err, auth.ErrLoginThrottled):
		return reply{status: http.StatusTooManyRequests, reason: "rate_limited", retryAfter: time.Minute}
	case errors.Is(err, auth.ErrRateLimited):
		return reply{status: http.StatusTooManyRequests, reason: "rate_limited", retryAfter: retryAfter(err)}
	case errors.Is(err, auth.ErrTooManyConnections):
		return reply{status: http.StatusTooManyRequests, reason: "too_many_connections"}
	case errors.Is(err, auth.ErrStoreUnavailable):
		return reply{status: http.StatusServiceUnavailable, reason: "auth_unavailable", retryAfter: 5 * time.Second}
	case errors.Is(err, errQuotaExceeded), errors.Is(err, auth.ErrQuotaExceeded):
		return reply{status: http.StatusPaymentRequired, reason: "quota_exceeded"}
	case errors.Is(err, auth.ErrBadParams):
		return reply{status: http.StatusBadRequest, reason: "bad_params"}
	case errors.Is(err, errBadTarget):
		return reply{status: http.StatusBadRequest, reason: "bad_request"}
	case errors.As(err, &ce), errors.As(err, &ee) && ee.CustomerFault():
		return reply{status: http.StatusBadRequest, reason: "bad_request"}
	case errors.Is(err, errPoolForbidden):
		return reply{status: http.StatusForbidden, reason: "pool_forbidden"}
	case errors.Is(err, pool.ErrNoExit), errors.Is(err, errShuttingDown):
		return reply{status: http.StatusServiceUnavailable, reason: "no_exit_available"}
	case errors.As(err, &ee) && ee.DestinationFault():
		switch ee.Reason {
		case "destination_forbidden":
			return reply{status: http.StatusForbidden, reason: ee.Reason}
		case "destination_timeout":
			return reply{status: http.StatusGatewayTimeout, reason: ee.Reason}
		default:
			return reply{status: http.StatusBadGateway, reason: "destination_unreachable"}
		}
	case isTimeout(err):
		return reply{status: http.StatusGatewayTimeout, reason: "exit_timeout"}
	default:
		return reply{status: http.StatusBadGateway, reason: "exit_failed"}
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
var clientClosed = reply{status: 499, reason: reasonClientClosed}

const reasonClientClosed = "client_closed"

func (r reply) message() string {
	switch r.reason {
	case "auth_required":
		return "proxy authentication required"
	case "bad_params":
		return "malformed targeting in the proxy username"
	case "bad_request":
		return "malformed request"
	case "pool_forbidden":
		return "this account may not use the requested zone"
	case "quota_exceeded":
		return "the account's traffic quota is used up"
	case "rate_limited":
		return "too many requests or failed logins; slow down"
	case "too_many_connections":
		return "the account's concurrent connection limit is reached"
	case "auth_unavailable":
		return "customer store unavailable; try again shortly"
	case "no_exit_available":
		return "no exit matches the requested targeting right now"
	case "destination_forbidden":
		return "the destination is not allowed"
	case "destination_unreachable":
		return "the destination could not be reached"
	case "destination_timeout":
		return "the destination did not answer in time"
	case "exit_timeout":
		return "the exit did not answer in time"
	case reasonClientClosed:
		return "the customer left before the answer"
	default:
		return "the exit failed"
	}
}

// writeRaw writes the reply on a connection the gateway owns (CONNECT path),
// then the connection is closed by the caller.
func (r reply) writeRaw(w io.Writer, detail string) error {
	body := r.message()
	if detail != "" {
		body += ": " + detail
	}
	var extra []string
	if r.status == http.StatusProxyAuthRequired {
		extra = append(extra, `Proxy-Authenticate: Basic realm="farmgate"`)
	}
	if r.retryAfter > 0 {
		extra = append(extra, "Retry-After: "+strconv.Itoa(retrySeconds(r.retryAfter)))
	}
	_, err := w.Write(wire.ErrorReply(r.status, r.reason, body+"\n", extra...))
	return err
}

// response builds the reply as an *http.Response for the forwarding path.
func (r reply) response(req *http.Request, detail string) *http.Response {
	body := r.message()
	if detail != "" {
		body += ": " + detail
	}
	body += "\n"
	h := make(http.Header, 4)
	h.Set(wire.HeaderError, r.reason)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.status == http.StatusProxyAuthRequired {
		h.Set("Proxy-Authenticate", `Basic realm="farmgate"`)
	}
	if r.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retrySeconds(r.retryAfter)))
	}
	return &http.Response{
		StatusCode:    r.status,
		Status:        strconv.Itoa(r.status) + " " + http.StatusText(r.status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
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
