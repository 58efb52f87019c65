// Package upstream is how a gateway talks to exits: farmgate exits (HTTP
// CONNECT with the exit token, tunnels on kept links, tunnels kept to
// origins for http:// requests, the exit's own health and info requests)
// and third-party upstreams (http://, https:// and socks5:// proxies; the
// plaintext ones through golang.org/x/net/proxy dialers). A Set holds, per exit, the dialer and
// the idle connections, links and origin tunnels kept for reuse.
//
// It is not where an exit is chosen (package pool), nor where a customer's
// request is read or answered (package gateway): it returns typed errors
// (ExitError, ErrExitDial, ErrBadRequest) and the gateway decides whose
// fault they are and what the customer is told.
package upstream
