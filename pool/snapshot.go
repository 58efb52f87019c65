package pool

import (
	"math"
	"slices"
	"strings"
	"sync/atomic"
)

// snapshot is an immutable view of the exits with the indexes picks use. A
// membership change builds a new one and swaps it in atomically; the policy
// counters in candidates are the only fields written after publication, and
// they are atomics.
type snapshot struct {
	byID   map[string]*member
	sorted []*member // by id
	groups map[groupKey]*group
	// pools holds each pool's members (sorted by id) and its lasting state.
	pools map[string]*poolView
}

// poolView is one pool in one snapshot.
type poolView struct {
	ps      *poolState
	members []*member
}

// groupKey selects the exits of a pool that match a filter; "" is any.
type groupKey struct {
	pool, country, city, dc string
}

// group is the set of exits matching one groupKey, split by DC affinity.
type group struct {
	pol policy
	ps  *poolState
	all *candidates
	// local and remote split all by DC == Config.LocalDC; nil when there is
	// no local DC or when the key names a DC.
	local, remote *candidates
}

// candidates is an ordered list of exits with the policy's counter.
type candidates struct {
	ms  []*member
	seq atomic.Uint64 // round_robin position / weighted stride sequence
	// strides holds the weights scaled to [1, strideMax] for the weighted
	// policy; nil for other policies.
	strides []uint16
}

// strideMax is the scale of the weighted policy's stride weights.
const strideMax = math.MaxUint16

func newCandidates(ms []*member, pol policy) *candidates {
	c := &candidates{ms: ms}
	if pol == policyWeighted && len(ms) > 0 {
		maxW := 0
		for _, m := range ms {
			maxW = max(maxW, m.weight)
		}
		c.strides = make([]uint16, len(ms))
		for i, m := range ms {
			s := uint64(m.weight) * strideMax / uint64(maxW)
			c.strides[i] = uint16(max(1, s))
		}
	}
	return c
}

// buildSnapshot indexes exits (sorted by id) with their states.
func buildSnapshot(exits []*Exit, states map[string]*exitState, pools map[string]*poolState, policies func(string) policy, localDC string) *snapshot {
	s := &snapshot{
		byID:   make(map[string]*member, len(exits)),
		sorted: make([]*member, 0, len(exits)),
		groups: make(map[groupKey]*group),
		pools:  make(map[string]*poolView),
	}
	lists := make(map[groupKey][]*member)
	for _, e := range exits {
		m := &member{
			exit:     e,
			st:       states[e.ID],
			idHash:   hashString(e.ID),
			capacity: int64(e.Capacity),
			weight:   max(1, e.Weight),
		}
		if len(e.Egress) > 0 {
			m.egressHash = make([]uint64, len(e.Egress))
			for i, a := range e.Egress {
				m.egressHash[i] = hashAddr(a)
			}
		}
		s.byID[e.ID] = m
		s.sorted = append(s.sorted, m)
		// Every combination of the optional filters.
		for mask := 0; mask < 8; mask++ {
			k := groupKey{pool: e.Pool}
			if mask&1 != 0 {
				k.country = e.Country
			}
			if mask&2 != 0 {
				k.city = e.City
			}
			if mask&4 != 0 {
				k.dc = e.DC
			}
			if (mask&1 != 0 && e.Country == "") || (mask&2 != 0 && e.City == "") || (mask&4 != 0 && e.DC == "") {
				continue // that filter cannot select an exit without the attribute
			}
			lists[k] = append(lists[k], m)
		}
	}
	for k, ms := range lists {
		pol := policies(k.pool)
		g := &group{pol: pol, ps: pools[k.pool], all: newCandidates(ms, pol)}
		if localDC != "" && k.dc == "" {
			var local, remote []*member
			for _, m := range ms {
				if m.exit.DC == localDC {
					local = append(local, m)
				} else {
					remote = append(remote, m)
				}
			}
			g.local = newCandidates(local, pol)
			g.remote = newCandidates(remote, pol)
		}
		s.groups[k] = g
	}
	for _, m := range s.sorted {
		v := s.pools[m.exit.Pool]
		if v == nil {
			v = &poolView{ps: pools[m.exit.Pool]}
			s.pools[m.exit.Pool] = v
		}
		v.members = append(v.members, m)
	}
	return s
}

// normalise applies the case conventions of Exit to e's fields.
func normalise(e *Exit) {
	e.ID = strings.TrimSpace(e.ID)
	e.Pool = strings.ToLower(e.Pool)
	e.DC = strings.ToLower(e.DC)
	e.City = strings.ToLower(e.City)
	e.Country = strings.ToUpper(e.Country)
	e.Egress = slices.Clone(e.Egress)
}
