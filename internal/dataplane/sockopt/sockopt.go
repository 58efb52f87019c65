// Package sockopt holds the socket options farmgate's listeners and dialers
// share, so the gateway, the exit and the load tool set them one way.
package sockopt

import (
	"context"
	"net"
)

// DeferAcceptSeconds is how long the kernel holds a connection that has
// sent nothing before handing it to Accept anyway.
const DeferAcceptSeconds = 5

// Listen opens a TCP listener for a proxy port, where the client always
// speaks first (an HTTP request head, a SOCKS5 greeting):
//
//   - TCP_DEFER_ACCEPT: Accept returns a connection once its first bytes are
//     there, so the first read finds them instead of parking the goroutine
//     until they arrive, one wake-up less per connection;
//   - no TCP keepalive probes: the proxies' own timeouts end silent
//     connections, and the probes cost four setsockopt calls per connection.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: deferAccept}
	return lc.Listen(ctx, "tcp", addr)
}
