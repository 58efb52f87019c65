// Package wire is the protocol between farmgate gateways and farmgate exits,
// in one place so both sides agree: the header names, the error reasons an
// exit answers with, the document an exit describes itself with, the
// hop-by-hop header hygiene both apply to forwarded HTTP, and the rules a
// request's target must meet (ParseTarget), which a gateway applies to its
// customers so that no exit is blamed for refusing a malformed one.
//
// A gateway authenticates to an exit with "Proxy-Authorization: Bearer
// TOKEN" and names the egress IP in HeaderEgress; the exit strips both. An
// exit's own errors carry HeaderError; it strips X-Farmgate-* from origin
// responses, so a gateway can trust that header.
//
// A gateway may also offer, on a CONNECT, to keep the connection for the
// tunnels after this one; package link has that part of the protocol.
package wire

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
)

// Header names.
const (
	// HeaderEgress names the egress IP the exit must bind (gateway → exit).
	HeaderEgress = "X-Farmgate-Egress"
	// HeaderError carries the reason of an error (exit → gateway, and
	// gateway → customer).
	HeaderError = "X-Farmgate-Error"
	// HeaderExit names the exit that served a customer (gateway → customer).
	HeaderExit = "X-Farmgate-Exit"
	// HeaderSession says a sticky session moved: "rebound".
	HeaderSession = "X-Farmgate-Session"
)

// InfoPath is where an exit describes itself (origin-form GET, same token).
const InfoPath = "/farmgate/info"

// HealthPath is where an exit says whether it can serve (origin-form GET,
// same token): 200 and a Health document when it can, an error status with
// HeaderError when it cannot. Gateways probe it every few seconds.
const HealthPath = "/farmgate/health"

// Reasons an exit puts in HeaderError.
const (
	ReasonUnauthorized           = "unauthorized"
	ReasonBadEgress              = "bad_egress"
	ReasonBadRequest             = "bad_request"
	ReasonDestinationForbidden   = "destination_forbidden"
	ReasonDestinationUnreachable = "destination_unreachable"
	ReasonDestinationTimeout     = "destination_timeout"
	ReasonExitBusy               = "exit_busy"
	// ReasonEgressUnavailable: an egress IP of the exit cannot be bound
	// (the address is gone from the machine); only HealthPath answers it.
	ReasonEgressUnavailable = "egress_unavailable"
)

// Info is what an exit reports about itself at InfoPath.
type Info struct {
	ID         string       `json:"id"`
	DC         string       `json:"dc"`
	Pool       string       `json:"pool"`
	Country    string       `json:"country"`
	City       string       `json:"city"`
	Egress     []netip.Addr `json:"egress"`
	MaxTunnels int          `json:"max_tunnels"`
	Version    string       `json:"version"`
}

// Health is what an exit that can serve answers at HealthPath.
type Health struct {
	// Tunnels is the number of tunnel slots in use, of MaxTunnels.
	Tunnels    int `json:"tunnels"`
	MaxTunnels int `json:"max_tunnels"`
}

// hopHeaders never cross a proxy (RFC 9110 section 7.6.1), as
// net/http/httputil.ReverseProxy has it.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// RemoveHop removes hop-by-hop headers, those named in Connection, and every
// X-Farmgate-* header. It returns the Upgrade value when h asked for a
// protocol upgrade, so a caller that supports upgrades can restore it.
func RemoveHop(h http.Header) (upgrade string) {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f != "" {
				if strings.EqualFold(f, "upgrade") {
					upgrade = h.Get("Upgrade")
				}
				h.Del(f)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	for k := range h {
		if IsFarmgate(k) {
			delete(h, k)
		}
	}
	return upgrade
}

// IsFarmgate reports whether k is an X-Farmgate-* header name.
func IsFarmgate(k string) bool {
	const p = "X-Farmgate-"
	return len(k) >= len(p) && strings.EqualFold(k[:len(p)], p)
}

// ErrorReply is a raw HTTP/1.1 error reply for a connection that is closed
// after it: the status line, the extra header lines (each "Name: value"),
// the reason in HeaderError, and body as text/plain (none if empty). The
// gateway and the exit answer CONNECT heads they read themselves with it.
func ErrorReply(status int, reason, body string, extra ...string) []byte {
	b := make([]byte, 0, 192+len(body))
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"...)
	for _, h := range extra {
		b = append(b, h...)
		b = append(b, "\r\n"...)
	}
	b = append(b, HeaderError+": "...)
	b = append(b, reason...)
	b = append(b, "\r\nConnection: close\r\n"...)
	if body != "" {
		b = append(b, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}
