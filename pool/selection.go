package pool

import "sync/atomic"

// policy is a selection policy. Each chooses one pickable member of a
// candidates list, or nil; none allocates, and all are safe for concurrent
// use (their only shared state is the list's atomic sequence).
type policy int

const (
	policyLeastLatency policy = iota
	policyRoundRobin
	policyWeighted
	policyLeastConn
	policyRandom
)

func parsePolicy(name string) policy {
	switch name {
	case PolicyRoundRobin:
		return policyRoundRobin
	case PolicyWeighted:
		return policyWeighted
	case PolicyLeastConn:
		return policyLeastConn
	case PolicyRandom:
		return policyRandom
	}
	return policyLeastLatency
}

const (
	// randomTries is how many random draws a policy makes before scanning
	// the whole list for pickable members (when most are not pickable).
	randomTries = 8
	// exactLeastConn is the list size up to which least_conn scans every
	// member; above it, it compares two random ones.
	exactLeastConn = 32
	// strideTries bounds the weighted policy's walk before it falls back to
	// a weighted random draw.
	strideTries = 256
)

// filter decides whether a member can take a new tunnel now.
type filter struct {
	now     func() int64
	nowNS   int64 // 0 until needed
	panic   bool  // ignore health (the pool is in panic mode)
	exclude []string
	// picks is the pool's pick counter, the clock of least_conn's
	// recency stamps; nil outside Pool.Pick (no stamps).
	picks *atomic.Uint64
}

func (f *filter) time() int64 {
	if f.nowNS == 0 {
		f.nowNS = f.now()
	}
	return f.nowNS
}

// ok reports whether m is pickable: not draining, under capacity, healthy
// (unless in panic mode) and not excluded.
func (f *filter) ok(m *member) bool {
	st := m.st
	if st.draining.Load() {
		return false
	}
	if m.capacity > 0 && st.active.Load() >= m.capacity {
		return false
	}
	if !f.panic {
		if st.down.Load() {
			return false
		}
		if u := st.ejectedUntil.Load(); u != 0 && u > f.time() {
			return false
		}
	}
	for _, id := range f.exclude {
		if id == m.exit.ID {
			return false
		}
	}
	return true
}

// choose applies pol to cs.
func (pol policy) choose(cs *candidates, f *filter, r *rng) *member {
	if cs == nil || len(cs.ms) == 0 {
		return nil
	}
	switch pol {
	case policyRoundRobin:
		return roundRobin(cs, f)
	case policyWeighted:
		return weighted(cs, f, r)
	case policyLeastConn:
		return leastConn(cs, f, r)
	case policyRandom:
		return random(cs, f, r)
	}
	return leastLatency(cs, f, r)
}

// random picks uniformly among the pickable members.
func random(cs *candidates, f *filter, r *rng) *member {
	n := len(cs.ms)
	for range randomTries {
		if m := cs.ms[r.IntN(n)]; f.ok(m) {
			return m
		}
	}
	a, _ := sample(cs.ms, f, r)
	return a
}

// sample draws up to two distinct pickable members uniformly by reservoir
// sampling over the whole list.
func sample(ms []*member, f *filter, r *rng) (a, b *member) {
	seen := 0
	for _, m := range ms {
		if !f.ok(m) {
			continue
		}
		seen++
		switch {
		case seen == 1:
			a = m
		case seen == 2:
			b = m
			if r.IntN(2) == 0 {
				a, b = b, a
			}
		default:
			if j := r.IntN(seen); j == 0 {
				a = m
			} else if j == 1 {
				b = m
			}
		}
	}
	return a, b
}

// two draws two distinct pickable members at random (b nil if only one is).
func two(cs *candidates, f *filter, r *rng) (a, b *member) {
	n := len(cs.ms)
	if n == 1 {
		if f.ok(cs.ms[0]) {
			return cs.ms[0], nil
		}
		return nil, nil
	}
	for range randomTries {
		i := r.IntN(n)
		j := r.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b = cs.ms[i], cs.ms[j]
		if f.ok(a) && f.ok(b) {
			return a, b
		}
	}
	return sample(cs.ms, f, r)
}

// roundRobin walks the list from a shared position, skipping members that
// are not pickable.
func roundRobin(cs *candidates, f *filter) *member {
	n := uint64(len(cs.ms))
	start := cs.seq.Add(1) - 1
	for i := range n {
		if m := cs.ms[(start+i)%n]; f.ok(m) {
			return m
		}
	}
	return nil
}

// leastConn picks the member with the fewest open tunnels, and among those
// the one picked longest ago: exactly for short lists, by the better of two
// random members (power of two choices) for long ones. The recency
// tie-break is what makes it rotate when traffic is light: with no tunnel
// open anywhere (sequential requests), every member ties on load, and the
// pick goes round the list instead of to a random or a "fastest" one.
func leastConn(cs *candidates, f *filter, r *rng) *member {
	n := len(cs.ms)
	var best *member
	if n > exactLeastConn {
		a, b := two(cs, f, r)
		best = a
		if b != nil && lessLoaded(b, a) {
			best = b
		}
	} else {
		start := r.IntN(n)
		for i := range n {
			m := cs.ms[(start+i)%n]
			if f.ok(m) && (best == nil || lessLoaded(m, best)) {
				best = m
			}
		}
	}
	if best != nil && f.picks != nil {
		best.st.picked.Store(f.picks.Add(1))
	}
	return best
}

// lessLoaded reports whether a should be preferred to b: fewer open
// tunnels, or as many and picked less recently.
func lessLoaded(a, b *member) bool {
	na, nb := a.st.active.Load(), b.st.active.Load()
	if na != nb {
		return na < nb
	}
	return a.st.picked.Load() < b.st.picked.Load()
}

// leastLatency compares two random members by the EWMA of their set-up time
// times their open tunnels plus one (power of two choices, "peak EWMA"
// style): a fast exit that is already busy loses to a slower idle one, so
// no exit starves on an old sample. A member without a sample yet wins, and
// ties go to the one with fewer open tunnels.
func leastLatency(cs *candidates, f *filter, r *rng) *member {
	a, b := two(cs, f, r)
	if b == nil {
		return a
	}
	la := a.st.latencyNS() * float64(a.st.active.Load()+1)
	lb := b.st.latencyNS() * float64(b.st.active.Load()+1)
	switch {
	case la < lb:
		return a
	case lb < la:
		return b
	case b.st.active.Load() < a.st.active.Load():
		return b
	}
	return a
}

// weighted is smooth weighted round robin by a lock-free stride scheduler
// (as in gRPC's weighted_round_robin): a shared sequence visits the members
// in turn and member i is taken in generation g when
// (w_i*g + offset_i) mod M >= M - w_i, where w_i is its weight scaled so the
// heaviest is M. Over M generations each member is taken w_i times, spread
// evenly. When the walk is long (skewed weights, many members not
// pickable) it falls back to a weighted random draw.
func weighted(cs *candidates, f *filter, r *rng) *member {
	n := uint64(len(cs.ms))
	for range strideTries {
		seq := cs.seq.Add(1) - 1
		i := seq % n
		gen := seq / n
		w := uint64(cs.strides[i])
		offset := (strideMax / 2) * i
		if (w*gen+offset)%strideMax < strideMax-w {
			continue
		}
		if m := cs.ms[i]; f.ok(m) {
			return m
		}
	}
	// Weighted reservoir of one.
	var chosen *member
	total := 0
	for _, m := range cs.ms {
		if !f.ok(m) {
			continue
		}
		total += m.weight
		if r.IntN(total) < m.weight {
			chosen = m
		}
	}
	return chosen
}
