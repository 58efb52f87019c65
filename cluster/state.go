package cluster

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/hashicorp/memberlist"
)

// Limits that keep gossiped state bounded whatever peers send.
const (
	// maxEgress is the largest egress list of one exit.
	maxEgress = 4096
	// maxEntries bounds the egress lists and drain records a node keeps.
	maxEntries = 1 << 16
	// maxBroadcast is the largest user message queued for gossip; larger
	// egress lists travel in push/pull state only.
	maxBroadcast = 1000
)

// User message and push/pull state types (first byte).
const (
	msgEgress byte = 1
	msgDrain  byte = 2
	msgState  byte = 3
	msgLeave  byte = 4
)

// egressEntry is one exit's egress list as gossiped: the list and the hash
// that the exit's metadata announces for it.
type egressEntry struct {
	id    string
	hash  uint32
	addrs []netip.Addr
}

// drainEntry is an operator's drain verdict on one exit. Verdicts are ordered
// by (clock, origin): the larger wins everywhere, so every node converges on
// the same verdict whatever order messages arrive in.
type drainEntry struct {
	id     string
	clock  uint64
	on     bool
	origin string
}

func (d drainEntry) newer(than drainEntry) bool {
	if d.clock != than.clock {
		return d.clock > than.clock
	}
	return d.origin > than.origin
}

func (w *writer) egress(e *egressEntry) {
	w.string(e.id)
	w.uint32(e.hash)
	w.uvarint(uint64(len(e.addrs)))
	for _, a := range e.addrs {
		w.addr(a)
	}
}

func (r *reader) egress() egressEntry {
	e := egressEntry{id: r.string(), hash: r.uint32()}
	n := r.count(5)
	if n > maxEgress {
		r.fail(errors.New("egress list too long"))
		return egressEntry{}
	}
	if n > 0 {
		e.addrs = make([]netip.Addr, 0, n)
	}
	for range n {
		e.addrs = append(e.addrs, r.addr())
	}
	return e
}

func (w *writer) drain(d *drainEntry) {
	w.string(d.id)
	w.uvarint(d.clock)
	w.bool(d.on)
	w.string(d.origin)
}

func (r *reader) drain() drainEntry {
	return drainEntry{id: r.string(), clock: r.uvarint(), on: r.bool(), origin: r.string()}
}

func encodeEgressMsg(e *egressEntry) []byte {
	w := writer{}
	w.byte(msgEgress)
	w.egress(e)
	return w.b
}

func encodeDrainMsg(d *drainEntry) []byte {
	w := writer{}
	w.byte(msgDrain)
	w.drain(d)
	return w.b
}

// pushState is what LocalState sends and MergeRemoteState receives.
type pushState struct {
	egress []egressEntry
	drains []drainEntry
}

func encodeState(s *pushState) []byte {
	w := writer{}
	w.byte(msgState)
	w.uvarint(uint64(len(s.egress)))
	for i := range s.egress {
		w.egress(&s.egress[i])
	}
	w.uvarint(uint64(len(s.drains)))
	for i := range s.drains {
		w.drain(&s.drains[i])
	}
	return w.b
}

// decodeState decodes push/pull state; it never panics.
func decodeState(b []byte) (pushState, error) {
	r := reader{b: b}
	var s pushState
	if t := r.byte(); r.err == nil && t != msgState {
		return s, fmt.Errorf("decoding state: type %d", t)
	}
	n := r.count(6)
	for i := 0; i < n && r.err == nil; i++ {
		s.egress = append(s.egress, r.egress())
	}
	n = r.count(4)
	for i := 0; i < n && r.err == nil; i++ {
		s.drains = append(s.drains, r.drain())
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail(errors.New("trailing bytes"))
	}
	if r.err != nil {
		return pushState{}, fmt.Errorf("decoding state: %w", r.err)
	}
	return s, nil
}

// mergeEgressLocked records e if it is news: not this node's own list, not
// already held, and not contradicted by the hash in the exit's metadata.
// c.mu must be held. It reports whether e was recorded.
func (c *Cluster) mergeEgressLocked(e egressEntry) bool {
	if e.id == "" || e.id == c.selfID {
		return false
	}
	cur, ok := c.egress[e.id]
	if ok && cur.hash == e.hash {
		return false
	}
	if !ok && len(c.egress) >= maxEntries {
		return false
	}
	if rec := c.exitLocked(e.id); rec != nil && rec.meta.EgressHash != e.hash {
		return false // stale: the exit announces another list
	}
	c.egress[e.id] = e
	c.markLocked(e.id)
	return true
}

// mergeDrainLocked records d if it is newer than the verdict held and
// advances the Lamport clock. c.mu must be held.
func (c *Cluster) mergeDrainLocked(d drainEntry) bool {
	if d.id == "" {
		return false
	}
	c.clock = max(c.clock, d.clock)
	cur, ok := c.drains[d.id]
	if ok && !d.newer(cur) {
		return false
	}
	if !ok && len(c.drains) >= maxEntries {
		return false
	}
	c.drains[d.id] = d
	c.markLocked(d.id)
	return true
}

// broadcast is a user message in memberlist's transmit-limited queue; a newer
// message about the same subject replaces an older one still queued.
type broadcast struct {
	name string
	msg  []byte
}

var _ memberlist.NamedBroadcast = (*broadcast)(nil)

func (b *broadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*broadcast)
	return ok && ob.name == b.name
}
func (b *broadcast) Message() []byte { return b.msg }
func (b *broadcast) Finished()       {}
func (b *broadcast) Name() string    { return b.name }

func (c *Cluster) queueEgress(e *egressEntry) {
	msg := encodeEgressMsg(e)
	if len(msg) > maxBroadcast {
		c.log.Debug("egress list too large to broadcast, left to push/pull", "exit", e.id, "egress", len(e.addrs))
		return
	}
	c.bcast.QueueBroadcast(&broadcast{name: "e/" + e.id, msg: msg})
}

func (c *Cluster) queueLeave(name string) {
	w := writer{}
	w.byte(msgLeave)
	w.string(name)
	c.bcast.QueueBroadcast(&broadcast{name: "l/" + name, msg: w.b})
}

func (c *Cluster) queueDrain(d *drainEntry) {
	c.bcast.QueueBroadcast(&broadcast{name: "d/" + d.id, msg: encodeDrainMsg(d)})
}

// delegate is the Cluster seen as a memberlist.Delegate. memberlist calls
// its methods from its own goroutines, concurrently; none of them blocks
// beyond a short critical section on c.mu or c.metaMu.
type delegate Cluster

var _ memberlist.Delegate = (*delegate)(nil)

// NodeMeta returns this node's encoded metadata.
func (d *delegate) NodeMeta(limit int) []byte {
	c := (*Cluster)(d)
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	if len(c.metaBytes) > limit {
		return nil // cannot happen: Validate and UpdateMeta check the size
	}
	return append([]byte(nil), c.metaBytes...)
}

// NotifyMsg handles a gossiped user message and re-gossips what is news.
func (d *delegate) NotifyMsg(b []byte) {
	c := (*Cluster)(d)
	if len(b) == 0 {
		return
	}
	r := reader{b: b[1:]}
	switch b[0] {
	case msgEgress:
		e := r.egress()
		if r.err != nil || len(r.b) != 0 {
			c.log.Debug("bad egress message dropped", "err", r.err)
			return
		}
		c.mu.Lock()
		news := c.mergeEgressLocked(e)
		c.mu.Unlock()
		if news {
			c.queueEgress(&e)
			c.wake()
		}
	case msgDrain:
		dr := r.drain()
		if r.err != nil || len(r.b) != 0 {
			c.log.Debug("bad drain message dropped", "err", r.err)
			return
		}
		c.mu.Lock()
		news := c.mergeDrainLocked(dr)
		c.mu.Unlock()
		if news {
			c.queueDrain(&dr)
			c.wake()
		}
	case msgLeave:
		name := r.string()
		if r.err != nil || len(r.b) != 0 {
			return
		}
		if c.markLeaving(name) {
			c.queueLeave(name)
		}
	default:
		c.log.Debug("unknown user message dropped", "type", b[0])
	}
}

// GetBroadcasts hands memberlist the queued user messages.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.bcast.GetBroadcasts(overhead, limit)
}

// LocalState sends this node's view: its own egress list, those of the exits
// it sees, and every drain verdict.
func (d *delegate) LocalState(join bool) []byte {
	c := (*Cluster)(d)
	var s pushState
	c.mu.Lock()
	if c.selfEgress != nil {
		s.egress = append(s.egress, *c.selfEgress)
	}
	for id, e := range c.egress {
		if rec := c.exitLocked(id); rec != nil && rec.alive() {
			s.egress = append(s.egress, e)
		}
	}
	for _, dr := range c.drains {
		s.drains = append(s.drains, dr)
	}
	c.mu.Unlock()
	return encodeState(&s)
}

// MergeRemoteState merges a peer's view sent by its LocalState.
func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	c := (*Cluster)(d)
	if len(buf) == 0 {
		return
	}
	s, err := decodeState(buf)
	if err != nil {
		c.log.Debug("bad push/pull state dropped", "err", err)
		return
	}
	news := false
	c.mu.Lock()
	for _, e := range s.egress {
		news = c.mergeEgressLocked(e) || news
	}
	for _, dr := range s.drains {
		news = c.mergeDrainLocked(dr) || news
	}
	c.mu.Unlock()
	if news {
		c.wake()
	}
}
