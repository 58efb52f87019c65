// Package pool knows every exit of the proxy farm and picks one for each tunnel.
//
// It holds the exits (fed by static configuration or by the cluster through
// [Pool.Upsert], [Pool.Remove] and [Pool.Apply]), the selection policies (round_robin, weighted, least_conn,
// least_latency, random), data-centre affinity, sticky sessions by rendezvous
// hashing over a [SessionStore], and health: active probes ([Config.Probe]) and
// passive outlier detection from the outcomes the gateway reports ([Pool.Report]).
//
// Picks read an immutable snapshot through an atomic pointer: they take no
// global lock and, on the non-sticky path, allocate nothing. Membership changes
// build a new snapshot (copy-on-write) and never block picks.
//
// The package is not a proxy: it never dials an exit (except through the
// caller's Probe function), and it imports no other package of farmgate.
package pool
