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
// The gateway reads and answers every request on the customer's connection
// itself: a SOCKS5 session (socks.go), or HTTP (http.go), where a CONNECT
// sets up a tunnel (connect.go) and absolute-form requests are forwarded one
// after another on a kept-alive connection (forward.go). Tunnels splice
// (relay.go) under a watcher that meters them and times them out (watch.go).
package gateway
