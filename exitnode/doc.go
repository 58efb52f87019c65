// Package exitnode is the forward proxy that runs on exit machines: the last
// hop of a farmgate farm, the one whose egress IPs the origin sees.
//
// An exit answers only gateways that present the shared token
// (Proxy-Authorization: Bearer <token>, compared in constant time); anything
// else gets 407 and nothing more, so an exit is never an open proxy. For each
// request the gateway names the egress IP in the X-Farmgate-Egress header; the
// exit strips it, checks it is one of its own, and binds the outgoing socket to
// it with IP_BIND_ADDRESS_NO_PORT so the source port is chosen at connect time
// (binding first would exhaust ports held in TIME_WAIT at a few hundred closes
// a second).
//
// Every destination is resolved once, every address is classified against the
// destination policy (see CheckAddr and DefaultDeny: loopback, private,
// link-local/metadata, CGNAT, documentation, multicast ranges and IPv4 hidden
// in IPv6 are refused unless Config.AllowDest allows them) and only a checked
// address is dialled: there is no second lookup a rebinding DNS could exploit.
//
// Two request kinds are served on one listener:
//
//   - CONNECT host:port. The exit serves these itself, before goproxy. A
//     connection that starts with a CONNECT head (how gateways open every
//     tunnel) is read on the raw connection, with no HTTP server, request
//     object or hijack in between (conn.go); a CONNECT on a connection that
//     began with other requests is hijacked from the HTTP server. goproxy's
//     ConnectHijack action would hand over the net.Conn but not the
//     bufio.Reader that may already hold bytes the client pipelined after the
//     CONNECT headers, and its ConnectAccept action relays through an
//     io.MultiReader (no splice) in goroutines nobody can stop or count. The
//     exit's relay writes those buffered bytes first, then runs the
//     two-goroutine io.Copy directly between the raw *net.TCPConn's so Linux
//     splices them, half-closes each direction as it ends, and is tracked so
//     MaxTunnels, the idle timeout and Shutdown apply to it.
//   - Absolute-form HTTP (GET http://host/path ...). These go through a
//     github.com/elazarl/goproxy ProxyHttpServer with one http.Transport per
//     egress IP (a Transport pools by destination, not by source address).
//     A farmgate gateway sends only requests with a body and https:// URLs
//     this way; a bodiless http:// request comes as a CONNECT to the origin
//     (on a link, asked to stay framed: link.HeaderFramed) and the gateway
//     speaks HTTP through it.
//     Bodies stream both ways; hop-by-hop headers, Proxy-Authorization and any
//     X-Farmgate-* header are removed in both directions; nothing is added
//     (no Via, no X-Forwarded-For, no default User-Agent).
//
// Errors the exit itself produces carry X-Farmgate-Error (see the reason
// constants in errors.go); a gateway can trust an X-Farmgate-* header on a
// response because the exit strips those headers from origin responses.
//
// GET /farmgate/info (origin-form, same token) answers the exit's Info as JSON
// so a gateway can learn its metadata and egress IPs. GET /farmgate/health
// (same token) is the gateways' active health check: 200 while the exit can
// serve, 503 while it shuts down or when an egress IP cannot be bound.
//
// Serve takes any listener. Given a crypto/tls one (farmgate exit
// --tls-cert, see internal/dataplane/farmtls: mutual TLS 1.3, gateways' certificates
// only), each connection's handshake is completed first, within
// ReadHeaderTimeout, and everything above works as on a socket, only
// copying through user space where it would splice (tls.go). The token is
// still required inside TLS: a certificate says "a gateway of a farm with
// this CA", the token "of this farm", and a stolen certificate alone opens
// nothing.
//
// The package is not a gateway: it does not know customers, pools or sessions.
package exitnode
