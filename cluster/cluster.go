package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/farmgate/farmgate/pool"
)

// Cluster is this node's membership in the farm's gossip cluster. Create it
// with New; stop it with Leave (graceful) and Shutdown. All methods are safe
// for concurrent use.
type Cluster struct {
	cfg    Config
	log    *slog.Logger
	sink   Sink
	name   string // memberlist node name
	addr   string // gossip host:port other nodes reach this one at
	selfID string // Meta.ID
	now    func() time.Time

	ml      *memberlist.Memberlist
	keyring *memberlist.Keyring // nil when Insecure without keys
	keyMu   sync.Mutex          // serialises ReloadKeys
	bcast   *memberlist.TransmitLimitedQueue
	// numNodes mirrors the alive member count for the broadcast queue, which
	// must not call back into memberlist.
	numNodes atomic.Int32

	updateMu  sync.Mutex // serialises UpdateMeta
	metaMu    sync.Mutex // guards meta and metaBytes
	meta      Meta
	metaBytes []byte

	mu        sync.Mutex            // guards the fields below; never held while calling memberlist
	members   map[string]*memberRec // by node name
	byID      map[string]string     // exit id → node name
	alive     int                   // members alive, this node included
	departed  map[string]departure  // by node name: members gone, for the rejoin loop
	seedAddrs []netip.AddrPort      // the seeds as last resolved, this node's own left out
	joined    bool                  // a join of this node has reached another one
	// seedsFailing is set from a failed join of the seeds to the next
	// success, so that a lone node warns once, not every round.
	seedsFailing bool
	egress       map[string]egressEntry
	selfEgress   *egressEntry // this exit's own list, nil on gateways
	drains       map[string]drainEntry
	clock        uint64              // Lamport clock of drain verdicts
	dirty        map[string]struct{} // exit ids the worker must look at

	// self holds the addresses that reach this node's own gossip (see
	// selfAddrs): never a seed, never a departed member. Set before
	// memberlist starts, read-only afterwards.
	self   map[netip.AddrPort]bool
	left   atomic.Bool   // Leave was called: the rejoin loop stops joining
	rounds atomic.Uint64 // rejoin rounds run, for tests

	randMu sync.Mutex // guards rand
	rand   *rand.Rand

	kick     chan struct{} // wakes the worker; capacity 1
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the worker and the rejoin loop
	shutOnce sync.Once
	shutErr  error
}

// New validates cfg, starts gossip on BindAddr and joins the seeds in
// cfg.Join, this node's own address left out. A failed join, or one that
// reached only this node, is logged and retried by the rejoin loop, not
// fatal; New returns after the first attempt (the seeds are contacted at
// once, each bounded by memberlist's TCPTimeout). sink is the pool a gateway
// feeds; nil on exits.
func New(cfg Config, sink Sink) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	c := &Cluster{
		cfg:      cfg,
		log:      logger.With("component", "cluster"),
		sink:     sink,
		name:     cfg.NodeName,
		selfID:   cfg.Meta.ID,
		now:      time.Now,
		members:  map[string]*memberRec{},
		byID:     map[string]string{},
		egress:   map[string]egressEntry{},
		drains:   map[string]drainEntry{},
		dirty:    map[string]struct{}{},
		departed: map[string]departure{},
		rand:     newRand(),
		kick:     make(chan struct{}, 1),
	}
	if c.name == "" {
		c.name = cfg.Meta.ID
	}
	if cfg.now != nil {
		c.now = cfg.now
	}
	c.meta = cfg.Meta
	c.meta.EgressCount = len(cfg.Egress)
	c.meta.EgressHash = egressHash(cfg.Egress)
	c.metaBytes = appendMeta(nil, &c.meta)
	if cfg.Meta.Role == RoleExit {
		c.selfEgress = &egressEntry{id: c.selfID, hash: c.meta.EgressHash, addrs: cfg.Egress}
	}
	kr, err := cfg.loadKeys()
	if err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	c.keyring = kr

	mc := cfg.memberlistConfig()
	mlog := newMemberlistLogger(c.log, cfg.Label)
	nt, port, err := cfg.newTransport(mlog)
	if err != nil {
		return nil, err
	}
	var transport memberlist.NodeAwareTransport = nt
	if cfg.wrapTransport != nil {
		transport = cfg.wrapTransport(nt)
	}
	bindIP, _, _ := splitIPPort(cfg.BindAddr, true)
	mc.Name = c.name
	mc.Transport = transport
	mc.BindAddr = bindIP.String()
	mc.BindPort = port
	mc.AdvertisePort = port
	var advertise netip.AddrPort
	if cfg.AdvertiseAddr != "" {
		ip, aport, _ := splitIPPort(cfg.AdvertiseAddr, false)
		mc.AdvertiseAddr = ip.String()
		if aport != 0 {
			mc.AdvertisePort = aport
		}
		advertise = netip.AddrPortFrom(ip, uint16(mc.AdvertisePort))
	}
	// Without an advertised address memberlist advertises the bound one, or
	// for 0.0.0.0 one of the host's, which selfAddrs lists.
	c.self = selfAddrs(advertise, bindIP, port)
	mc.Label = cfg.Label
	mc.Keyring = kr
	mc.Delegate = (*delegate)(c)
	mc.Events = (*events)(c)
	mc.Logger = mlog
	c.bcast = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return max(int(c.numNodes.Load()), 1) },
		RetransmitMult: mc.RetransmitMult,
	}

	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.runWorker()
	ml, err := memberlist.Create(mc)
	if err != nil {
		c.cancel()
		c.wg.Wait()
		_ = nt.Shutdown()
		return nil, fmt.Errorf("starting gossip on %s: %w", cfg.BindAddr, err)
	}
	c.ml = ml
	// memberlist rewrites its local node on every UpdateNode: keep the
	// address, which does not change, instead of reading it there later.
	c.addr = ml.LocalNode().Address()
	c.log.Info("gossip started", "node", c.name, "role", c.meta.Role, "addr", c.addr,
		"profile", cfg.Profile, "encrypted", kr != nil)
	c.announceEgress()
	if len(cfg.Join) > 0 {
		c.join(true, nil, c.aliveAddrs())
	}
	c.wg.Add(1)
	go c.runRejoin()
	return c, nil
}

// announceEgress gossips this exit's egress list (a no-op on gateways).
func (c *Cluster) announceEgress() {
	if c.selfEgress != nil && c.selfEgress.hash != 0 {
		c.queueEgress(c.selfEgress)
	}
}

// Addr returns the host:port other nodes reach this node's gossip at (with
// the port actually bound when BindAddr asked for port 0).
func (c *Cluster) Addr() string { return c.addr }

// LocalMeta returns this node's current metadata.
func (c *Cluster) LocalMeta() Meta {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	return c.meta
}

// UpdateMeta changes this node's metadata (e.g. its weight) and spreads it to
// every node, waiting up to UpdateTimeout for the broadcast to go out. ID and
// Role cannot change; EgressCount and EgressHash are the cluster's. Invalid
// or oversized metadata is refused, naming the field, and nothing changes.
func (c *Cluster) UpdateMeta(f func(*Meta)) error {
	c.updateMu.Lock()
	defer c.updateMu.Unlock()
	c.metaMu.Lock()
	m := c.meta
	f(&m)
	m.EgressCount, m.EgressHash = c.meta.EgressCount, c.meta.EgressHash
	switch {
	case m.ID != c.meta.ID:
		c.metaMu.Unlock()
		return fmt.Errorf("updating metadata of %s: Meta.ID cannot change", c.selfID)
	case m.Role != c.meta.Role:
		c.metaMu.Unlock()
		return fmt.Errorf("updating metadata of %s: Meta.Role cannot change", c.selfID)
	}
	if err := m.validate(); err != nil {
		c.metaMu.Unlock()
		return fmt.Errorf("updating metadata of %s: %w", c.selfID, err)
	}
	c.meta = m
	c.metaBytes = appendMeta(nil, &m)
	c.metaMu.Unlock()
	if err := c.ml.UpdateNode(c.cfg.UpdateTimeout); err != nil {
		return fmt.Errorf("updating metadata of %s: %w", c.selfID, err)
	}
	return nil
}

// SetDraining marks this node draining (or not) in its metadata. An exit
// calls it on SIGTERM before waiting for its tunnels: every gateway stops
// picking it for new tunnels.
func (c *Cluster) SetDraining(on bool) error {
	return c.UpdateMeta(func(m *Meta) { m.Draining = on })
}

// DrainExit is an operator's drain (on) or undrain (off) of exit id, as the
// admin API calls it. The verdict spreads over gossip, ordered by a Lamport
// clock so repeated toggles and late joiners converge, and every gateway
// applies it to its pool. An exit this node has never seen is
// pool.ErrUnknownExit.
func (c *Cluster) DrainExit(id string, on bool) error {
	c.mu.Lock()
	if c.exitLocked(id) == nil {
		c.mu.Unlock()
		return fmt.Errorf("draining exit %s: %w", id, pool.ErrUnknownExit)
	}
	c.clock++
	d := drainEntry{id: id, clock: c.clock, on: on, origin: c.name}
	c.drains[id] = d
	c.markLocked(id)
	c.mu.Unlock()
	c.queueDrain(&d)
	c.wake()
	c.log.Info("exit drain requested", "exit", id, "draining", on, "clock", d.clock)
	c.sendToGateways(encodeDrainMsg(&d))
	return nil
}

// sendToGateways sends msg over TCP to every other alive gateway, so an
// operator action reaches them even when gossip packets are lost; gossip and
// push/pull still carry it to everyone else. Failures are logged: gossip
// remains the way the message spreads. The addresses come from this node's
// records, not from memberlist's Members: those are its live node structs,
// which every alive message rewrites without a lock we could take.
func (c *Cluster) sendToGateways(msg []byte) {
	c.mu.Lock()
	var gws []*memberlist.Node
	for name, r := range c.members {
		if r.alive() && r.meta.Role == RoleGateway && name != c.name {
			if a, err := parseAddrPort(r.addr); err == nil {
				gws = append(gws, &memberlist.Node{Name: name, Addr: a.Addr().AsSlice(), Port: a.Port()})
			}
		}
	}
	c.mu.Unlock()
	for _, n := range gws {
		if err := c.ml.SendReliable(n, msg); err != nil {
			c.log.Debug("sending drain to gateway failed, gossip will carry it", "node", n.Name, "err", err)
		}
	}
}

// Leave announces a graceful departure and waits up to timeout for it to
// spread; call Shutdown afterwards. Gateways remove this node at once
// instead of waiting for failure detection.
func (c *Cluster) Leave(timeout time.Duration) error {
	c.left.Store(true)
	c.queueLeave(c.name) // tells peers this departure is not a failure
	if err := c.ml.Leave(timeout); err != nil {
		return fmt.Errorf("leaving cluster: %w", err)
	}
	return nil
}

// Shutdown stops gossip without a leave message (peers will detect the
// failure) and stops every goroutine of the cluster. It is idempotent.
func (c *Cluster) Shutdown() error {
	c.shutOnce.Do(func() {
		c.cancel()
		if err := c.ml.Shutdown(); err != nil {
			c.shutErr = fmt.Errorf("shutting down gossip: %w", err)
		}
		c.wg.Wait()
	})
	return c.shutErr
}
