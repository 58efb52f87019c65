package cluster

import (
	"github.com/hashicorp/memberlist"
)

// Member states as reported by [Cluster.Members].
const (
	StateAlive = "alive"
	StateDead  = "dead"
	StateLeft  = "left"
)

// memberRec is what this node knows of one member. Guarded by Cluster.mu.
type memberRec struct {
	name  string
	addr  string // gossip host:port
	meta  Meta
	state string // StateAlive, StateDead or StateLeft (suspicion is memberlist's)
	// leaving is set when the member announced a graceful leave (msgLeave)
	// before its departure was seen.
	leaving bool
	since   int64 // unix nanoseconds of the last state change
}

func (r *memberRec) alive() bool { return r.state == StateAlive }

// events is the Cluster seen as a memberlist.EventDelegate. memberlist calls
// it synchronously from its goroutines (never concurrently), sometimes while
// holding its node lock: it only records the change under c.mu, marks the
// exit dirty and wakes the worker, which does the slow work. It never calls
// back into memberlist.
type events Cluster

var _ memberlist.EventDelegate = (*events)(nil)

func (ev *events) NotifyJoin(n *memberlist.Node)   { (*Cluster)(ev).observe(n, StateAlive) }
func (ev *events) NotifyUpdate(n *memberlist.Node) { (*Cluster)(ev).observe(n, StateAlive) }
func (ev *events) NotifyLeave(n *memberlist.Node) {
	// memberlist does not say whether a node left or died (Node.State is not
	// kept up to date), so a leave is told apart by the msgLeave the node
	// gossips first (see Leave); observe and markLeaving reconcile both
	// orders of arrival.
	(*Cluster)(ev).observe(n, StateDead)
}

// observe records a member's new state and metadata.
func (c *Cluster) observe(n *memberlist.Node, state string) {
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		c.log.Debug("member with unreadable metadata ignored", "node", n.Name, "err", err)
		return
	}
	now := c.now().UnixNano()
	c.mu.Lock()
	old := c.members[n.Name]
	rec := &memberRec{name: n.Name, addr: n.Address(), meta: meta, state: state, since: now}
	if old != nil && old.state == state {
		rec.since = old.since
	}
	wasAlive := old != nil && old.alive()
	if wasAlive && state == StateAlive {
		rec.leaving = old.leaving // an update between msgLeave and the leave
	}
	if state == StateDead && old != nil && old.leaving {
		state, rec.state = StateLeft, StateLeft
	}
	switch {
	case state == StateAlive && !wasAlive:
		c.alive++
		c.numNodes.Store(int32(c.alive))
	case state != StateAlive && wasAlive:
		c.alive--
		c.numNodes.Store(int32(c.alive))
	}
	if state == StateAlive {
		c.backLocked(n.Name, rec.addr)
	} else {
		// Left or failed alike: a gateway stopped by SIGTERM leaves
		// gracefully and must be found again when it restarts.
		c.rememberDepartedLocked(n.Name, rec.addr, now)
	}
	c.members[n.Name] = rec
	if old != nil && old.meta.ID != meta.ID {
		if c.byID[old.meta.ID] == n.Name {
			delete(c.byID, old.meta.ID)
		}
		c.markLocked(old.meta.ID)
	}
	if meta.Role == RoleExit {
		c.byID[meta.ID] = n.Name
		c.markLocked(meta.ID)
	}
	alive := c.alive
	c.mu.Unlock()
	c.wake()
	switch {
	case n.Name == c.name:
	case meta.Role == RoleGateway && (old == nil || old.state != state):
		// Gateways are few and come and go by hand: every node says so
		// (gateways log the exits they add and remove themselves).
		c.log.Info(gatewayEvents[state], "node", n.Name, "id", meta.ID, "dc", meta.DC, "addr", rec.addr, "members", alive)
	default:
		c.log.Debug("member "+state, "node", n.Name, "id", meta.ID, "role", meta.Role, "addr", rec.addr)
	}
}

// gatewayEvents are the log messages of a gateway's changes of state.
var gatewayEvents = map[string]string{
	StateAlive: "gateway joined the farm",
	StateLeft:  "gateway left the farm",
	StateDead:  "gateway unreachable, taken for failed",
}

// markLeaving records that member name announced a graceful leave. It
// reports whether that was news.
func (c *Cluster) markLeaving(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	rec := c.members[name]
	switch {
	case rec == nil || rec.leaving || rec.state == StateLeft:
		return false
	case rec.state == StateDead: // the leave arrived before this message
		rec.state = StateLeft
	}
	rec.leaving = true
	return true
}

// exitLocked returns the member record of exit id, or nil. c.mu must be held.
func (c *Cluster) exitLocked(id string) *memberRec {
	name, ok := c.byID[id]
	if !ok {
		return nil
	}
	rec := c.members[name]
	if rec == nil || rec.meta.Role != RoleExit || rec.meta.ID != id {
		return nil
	}
	return rec
}

// markLocked queues exit id for the worker. c.mu must be held. The dirty set
// holds ids, not events, so it is bounded by the number of exits and a burst
// of events about one exit costs one pass.
func (c *Cluster) markLocked(id string) {
	if id != "" {
		c.dirty[id] = struct{}{}
	}
}

// wake tells the worker there is work, without blocking.
func (c *Cluster) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}
