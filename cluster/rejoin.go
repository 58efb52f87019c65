package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Bounds of the rejoin loop.
const (
	// maxDeparted bounds the departed members remembered for the rejoin
	// loop; past it the oldest departure is forgotten first.
	maxDeparted = 1024
	// maxJoinTargets bounds the addresses one round contacts (at once, so a
	// round lasts at most memberlist's TCPTimeout): reaching one node of a
	// group merges the whole group, so a sample of a large list suffices.
	maxJoinTargets = 16
	// seedLookupTimeout bounds the DNS lookups of the seeds in one round.
	seedLookupTimeout = 5 * time.Second
)

// departure is a member that left or failed, remembered so that the rejoin
// loop can try its last address until it is back or ReconnectTimeout passes.
type departure struct {
	addr  netip.AddrPort
	since int64 // unix nanoseconds
}

// runRejoin is the loop that brings a node back into its cluster: every
// RejoinInterval (±20% jitter) it runs one rejoinOnce.
func (c *Cluster) runRejoin() {
	defer c.wg.Done()
	timer := time.NewTimer(c.jitter(c.cfg.RejoinInterval))
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-timer.C:
		}
		c.safely("rejoin", c.rejoinOnce)
		timer.Reset(c.jitter(c.cfg.RejoinInterval))
	}
}

// rejoinOnce contacts what this node has lost: the last addresses of the
// members that left or failed less than ReconnectTimeout ago and are not
// back, and the seeds while it sees none of them alive. A graceful leave
// counts as a loss: gateways stopped by SIGTERM leave gracefully, and their
// exits must reach them again when they restart. A node alone always sees
// none of its seeds, so it keeps trying them; its own address is never a
// seed.
func (c *Cluster) rejoinOnce() {
	c.rounds.Add(1)
	if c.left.Load() {
		return
	}
	alive := c.aliveAddrs()
	cutoff := c.now().Add(-c.cfg.ReconnectTimeout).UnixNano()
	c.mu.Lock()
	var departed []netip.AddrPort
	var forgotten []string
	for name, d := range c.departed {
		switch {
		case d.since < cutoff:
			delete(c.departed, name)
			forgotten = append(forgotten, name)
		case !alive[d.addr] && !slices.Contains(departed, d.addr):
			departed = append(departed, d.addr)
		}
	}
	seesSeed := slices.ContainsFunc(c.seedAddrs, func(a netip.AddrPort) bool { return alive[a] })
	c.mu.Unlock()
	if len(forgotten) > 0 {
		c.log.Info("departed members forgotten, no longer retried", "nodes", forgotten, "after", c.cfg.ReconnectTimeout.String())
	}
	wantSeeds := len(c.cfg.Join) > 0 && !seesSeed
	if wantSeeds || len(departed) > 0 {
		c.join(wantSeeds, departed, alive)
	}
}

// join contacts the seeds (when seeds is set) and the departed addresses
// that are not alive in alive. A failure is logged, not returned, since the
// rejoin loop retries. Reaching only this node is not joining.
func (c *Cluster) join(seeds bool, departed []netip.AddrPort, alive map[netip.AddrPort]bool) {
	var targets []netip.AddrPort
	var lookupErr error
	if seeds {
		var resolved []netip.AddrPort
		resolved, lookupErr = c.resolveSeeds()
		c.mu.Lock()
		c.seedAddrs = resolved
		c.mu.Unlock()
		if slices.ContainsFunc(resolved, func(a netip.AddrPort) bool { return alive[a] }) {
			seeds, lookupErr = false, nil // a seed is a member already
		} else {
			targets = append(targets, resolved...)
			c.shuffle(targets)
		}
	}
	c.shuffle(departed)
	for _, a := range departed {
		if !slices.Contains(targets, a) {
			targets = append(targets, a)
		}
	}
	targets = targets[:min(len(targets), maxJoinTargets)]
	if len(targets) == 0 {
		// Seeds that name only this node (the first gateway of a farm).
		if seeds && c.ml.NumMembers() == 1 && c.startFailing() {
			c.log.Warn("no seed to join but this node, waiting to be joined", "seeds", c.cfg.Join, "err", lookupErr)
		}
		return
	}

	reached, err := c.contact(targets)
	err = errors.Join(lookupErr, err)
	members := c.ml.NumMembers()
	ok := reached > 0 && members > 1
	c.mu.Lock()
	first := !c.joined
	if ok {
		c.joined, c.seedsFailing = true, false
	}
	c.mu.Unlock()
	switch {
	case ok && first:
		c.log.Info("joined cluster", "reached", reached, "tried", len(targets), "members", members)
		c.announceEgress()
	case ok:
		c.log.Info("rejoined cluster", "reached", reached, "tried", len(targets), "members", members)
		c.announceEgress()
	case seeds && reached > 0 && c.startFailing():
		// An address that is this node after all (NAT, an alias): memberlist
		// answered itself.
		c.log.Warn("joining reached only this node, will retry", "seeds", c.cfg.Join, "tried", len(targets),
			"every", c.cfg.RejoinInterval.String())
	case seeds && reached == 0 && c.startFailing():
		c.log.Warn("joining seeds failed, will retry", "seeds", c.cfg.Join, "tried", len(targets),
			"departed", len(departed), "every", c.cfg.RejoinInterval.String(), "err", err)
	default:
		c.log.Debug("rejoin failed, will retry", "seeds", seeds, "tried", len(targets), "reached", reached,
			"departed", len(departed), "err", err)
	}
}

// startFailing records that joining the seeds failed and reports whether
// that starts a streak: a lone node warns once, not every round.
func (c *Cluster) startFailing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := !c.seedsFailing
	c.seedsFailing = true
	return first
}

// contact joins each target at once, each bounded by memberlist's
// TCPTimeout, and returns how many answered.
func (c *Cluster) contact(targets []netip.AddrPort) (int, error) {
	if len(targets) == 0 {
		return 0, errors.New("no address to try")
	}
	var wg sync.WaitGroup
	ns := make([]int, len(targets))
	errs := make([]error, len(targets))
	for i, a := range targets {
		wg.Go(func() {
			ns[i], errs[i] = c.ml.Join([]string{a.String()})
			errs[i] = single(errs[i])
		})
	}
	wg.Wait()
	reached := 0
	for _, n := range ns {
		reached += n
	}
	return reached, errors.Join(errs...)
}

// single unwraps the one error of the multi-error memberlist's Join
// returns, for a log line without its list decoration.
func single(err error) error {
	var multi interface{ WrappedErrors() []error }
	if errors.As(err, &multi) {
		if w := multi.WrappedErrors(); len(w) == 1 {
			return w[0]
		}
	}
	return err
}

// resolveSeeds looks up the seeds and returns their addresses without this
// node's own. A seed that does not resolve (in Docker, a container that is
// down) is skipped and reported in the error.
func (c *Cluster) resolveSeeds() ([]netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(c.ctx, seedLookupTimeout)
	defer cancel()
	var out []netip.AddrPort
	var errs []error
	add := func(ip netip.Addr, port uint16) {
		a := netip.AddrPortFrom(ip.Unmap(), port)
		if !c.self[a] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, seed := range c.cfg.Join {
		host, p, err := net.SplitHostPort(seed)
		if err != nil {
			errs = append(errs, fmt.Errorf("seed %s: %w", seed, err))
			continue
		}
		port, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			errs = append(errs, fmt.Errorf("seed %s: bad port", seed))
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			add(ip, uint16(port))
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			errs = append(errs, fmt.Errorf("resolving seed %s: %w", seed, err))
			continue
		}
		for _, ip := range ips {
			add(ip, uint16(port))
		}
	}
	return out, errors.Join(errs...)
}

// aliveAddrs returns the gossip addresses of the members alive (or suspect),
// this node included. It reads this node's records: the nodes that
// memberlist's Members returns are its live structs, which it rewrites
// without a lock the caller could take.
func (c *Cluster) aliveAddrs() map[netip.AddrPort]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[netip.AddrPort]bool, c.alive)
	for _, r := range c.members {
		if a, err := parseAddrPort(r.addr); err == nil && r.alive() {
			out[a] = true
		}
	}
	return out
}

// rememberDepartedLocked records that member name, last at addr, left or
// failed at now. c.mu must be held.
func (c *Cluster) rememberDepartedLocked(name, addr string, now int64) {
	a, err := parseAddrPort(addr)
	if err != nil || name == c.name || c.self[a] {
		return
	}
	if _, ok := c.departed[name]; !ok && len(c.departed) >= maxDeparted {
		oldest := ""
		for n, d := range c.departed {
			if oldest == "" || d.since < c.departed[oldest].since {
				oldest = n
			}
		}
		delete(c.departed, oldest)
	}
	c.departed[name] = departure{addr: a, since: now}
}

// backLocked forgets the departure of member name, and of any member last
// seen at addr, which is taken again. c.mu must be held.
func (c *Cluster) backLocked(name, addr string) {
	if len(c.departed) == 0 {
		return
	}
	delete(c.departed, name)
	a, err := parseAddrPort(addr)
	if err != nil {
		return
	}
	for n, d := range c.departed {
		if d.addr == a {
			delete(c.departed, n)
		}
	}
}

// parseAddrPort parses ip:port with an IPv4-mapped IPv6 address unmapped,
// as memberlist reports node addresses.
func parseAddrPort(s string) (netip.AddrPort, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port()), nil
}

// selfAddrs returns the addresses that reach this node's gossip: the
// advertised one, and the bound one, or when bound to every address, each
// address of the host's interfaces with the bound port.
func selfAddrs(advertise netip.AddrPort, bindIP netip.Addr, port int) map[netip.AddrPort]bool {
	self := map[netip.AddrPort]bool{}
	if advertise.IsValid() {
		self[advertise] = true
	}
	p := uint16(port)
	if !bindIP.IsUnspecified() {
		self[netip.AddrPortFrom(bindIP, p)] = true
		return self
	}
	self[netip.AddrPortFrom(netip.IPv4Unspecified(), p)] = true
	self[netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), p)] = true
	self[netip.AddrPortFrom(netip.IPv6Loopback(), p)] = true
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return self
	}
	for _, a := range addrs {
		if pfx, err := netip.ParsePrefix(a.String()); err == nil {
			self[netip.AddrPortFrom(pfx.Addr().Unmap(), p)] = true
		}
	}
	return self
}

// shuffle puts addrs in random order.
func (c *Cluster) shuffle(addrs []netip.AddrPort) {
	c.randMu.Lock()
	c.rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	c.randMu.Unlock()
}

// jitter returns d moved randomly by up to ±20%.
func (c *Cluster) jitter(d time.Duration) time.Duration {
	c.randMu.Lock()
	f := 0.8 + 0.4*c.rand.Float64()
	c.randMu.Unlock()
	return time.Duration(float64(d) * f)
}

// newRand seeds the jitter source.
func newRand() *rand.Rand { return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())) }
