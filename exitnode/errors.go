package exitnode

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// Reasons the exit puts in X-Farmgate-Error (internal/dataplane/wire is where both
// sides of the protocol take them from).
const (
	ReasonUnauthorized           = wire.ReasonUnauthorized
	ReasonBadEgress              = wire.ReasonBadEgress
	ReasonBadRequest             = wire.ReasonBadRequest
	ReasonDestinationForbidden   = wire.ReasonDestinationForbidden
	ReasonDestinationUnreachable = wire.ReasonDestinationUnreachable
	ReasonDestinationTimeout     = wire.ReasonDestinationTimeout
	ReasonExitBusy               = wire.ReasonExitBusy
	ReasonEgressUnavailable      = wire.ReasonEgressUnavailable
)

// HeaderError carries the reason of an error the exit itself produced.
const HeaderError = wire.HeaderError

// HeaderEgress is the request header naming the egress IP to use.
const HeaderEgress = wire.HeaderEgress

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
	case errors.Is(err, errEgressUnavailable):
		return http.StatusServiceUnavailable, ReasonEgressUnavailable
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
