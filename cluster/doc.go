// Package cluster makes the gateways and exits of a farm one gossip cluster
// (hashicorp/memberlist) and feeds what it learns about exits into a pool.
//
// Every node (gateway or exit) runs a [Cluster]. Its [Meta] — role, id, data
// centre, pool, country, city, weight, capacity, proxy address, version,
// draining — travels in memberlist's node metadata, encoded compactly to fit
// the 512-byte [memberlist.MetaMaxSize]. An exit's list of egress IPs is too
// large for that: it travels in user broadcasts and in push/pull state, or is
// fetched from the exit by [Config.Resolve].
//
// On a gateway, joins, metadata updates, failures and leaves of exit members
// become [Sink] calls (Upsert, Remove, Drain), made by one worker goroutine so
// that memberlist's own goroutines never block on the pool. Operator drains
// ([Cluster.DrainExit]) spread over gossip ordered by a Lamport clock, so
// repeated toggles and late joiners converge. Health verdicts are not
// gossiped: each gateway's pool probes for itself.
//
// Gossip is encrypted with an AES keyring that can be rotated without a
// restart ([Cluster.ReloadKeys]) and tagged with a cluster label, so a node
// with the wrong key or label changes nothing in the cluster. A rejoin loop
// keeps contacting the members that left or failed (for up to
// [Config.ReconnectTimeout]) and the seeds while a node sees none of them, so
// partitions heal and a restarted gateway tier gets its exits back; a node
// never counts itself as a seed.
//
// The package is not a proxy and does not judge exit health; it imports pool
// and nothing else of farmgate.
package cluster
