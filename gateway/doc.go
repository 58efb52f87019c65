// Package gateway is the customer-facing side of farmgate: it accepts HTTP
// CONNECT and absolute-form HTTP requests on one listener, authenticates the
// customer, reads the targeting in their username, asks the pool for an exit and
// tunnels the traffic through it.
//
// It is not where exits are chosen (package pool) nor where customers are
// stored (package auth); it maps their errors to the customer-facing status
// codes in one table (errors.go) and owns the data path: the relay, the
// failover before a tunnel is up, the header hygiene of forwarded requests,
// and what a customer is billed (usage.go).
// How an exit is reached (dialers, kept links, tunnels kept to origins,
// health checks) is package upstream's.
//
// The gateway reads every connection's first request itself (gateway.go):
// CONNECT and SOCKS5 tunnels are set up on the raw connection, and so are
// plain requests (a bodiless GET or HEAD in absolute form, plain.go), one
// after another on a kept-alive connection. From the first request that is
// not plain, net/http's server and goproxy serve the connection
// (forward.go); both paths admit and forward through serveHTTP.
package gateway
