package exitnode

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// Reasons the exit puts in X-Farmgate-Error. The gateway relies on them.
const (
	ReasonUnauthorized           = "unauthorized"
	ReasonBadEgress              = "bad_egress"
	ReasonBadRequest             = "bad_request"
	ReasonDestinationForbidden   = "destination_forbidden"
	ReasonDestinationUnreachable = "destination_unreachable"
	ReasonDestinationTimeout     = "destination_timeout"
	ReasonExitBusy               = "exit_busy"
)

// HeaderError carries the reason of an error the exit itself produced.
const HeaderError = "X-Farmgate-Error"

// HeaderEgress is the request header naming the egress IP to use.
const HeaderEgress = "X-Farmgate-Egress"

// errBusy means MaxTunnels is reached or the exit is shutting down.
var errBusy = errors.New("exit busy")

// errBadEgress means X-Farmgate-Egress is malformed or not one of the exit's IPs.
var errBadEgress = errors.New("bad egress")

// errUnauthorized means the gateway token is missing or wrong.
var errUnauthorized = errors.New("unauthorized")

// reply maps an error to the status and reason the exit answers with. It is
// the one table of the package; everything else returns wrapped errors.
func reply(err error) (status int, reason string) {
	var ne net.Error
	switch {
	case errors.Is(err, errUnauthorized):
		return http.StatusProxyAuthRequired, ReasonUnauthorized
	case errors.Is(err, errBusy):
		return http.StatusServiceUnavailable, ReasonExitBusy
	case errors.Is(err, errBadEgress):
		return http.StatusBadRequest, ReasonBadEgress
	case errors.Is(err, errBadTarget):
		return http.StatusBadRequest, ReasonBadRequest
	case errors.Is(err, ErrDestinationForbidden):
		return http.StatusForbidden, ReasonDestinationForbidden
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout, ReasonDestinationTimeout
	default:
		return http.StatusBadGateway, ReasonDestinationUnreachable
	}
}
