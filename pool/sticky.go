package pool

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
)

// pickSticky serves a pick with a session: the stored binding if its exit can
// still serve the criteria, else rendezvous hashing of the session key over
// the pickable exits (local DC first) and over the chosen exit's egress IPs.
func (p *Pool) pickSticky(ctx context.Context, s *snapshot, g *group, c *Criteria, f *filter) (Pick, error) {
	key := sessionKey(c.Customer, c.Session)
	kh := hashString(key)
	ttl := c.SessTime
	if ttl <= 0 {
		ttl = p.cfg.SessionTTL
	}

	old, found, err := p.sessions.Get(ctx, key, ttl)
	p.storeState.observe(p, "get", err)
	if err != nil {
		m := p.hrwChoose(g, f, kh)
		if m == nil {
			return Pick{}, noExit(c, "no matching exit can take a tunnel")
		}
		return Pick{Exit: m.exit, Egress: hrwEgress(m, kh)}, nil
	}
	if found {
		if m := s.byID[old.ExitID]; m != nil && m.matches(c) && f.ok(m) && m.hasEgress(old.Egress) {
			return Pick{Exit: m.exit, Egress: old.Egress}, nil
		}
	}

	m := p.hrwChoose(g, f, kh)
	if m == nil {
		return Pick{}, noExit(c, "no matching exit can take a tunnel")
	}
	b := Binding{ExitID: m.exit.ID, Egress: hrwEgress(m, kh)}
	if found {
		p.storeState.observe(p, "rebind", p.sessions.Rebind(ctx, key, b, ttl))
		return Pick{Exit: m.exit, Egress: b.Egress, Rebound: true}, nil
	}
	won, err := p.sessions.Bind(ctx, key, b, ttl)
	p.storeState.observe(p, "bind", err)
	if err == nil && won != b {
		// Another gateway bound the session first: use its choice if this
		// gateway can, else take the session over.
		if w := s.byID[won.ExitID]; w != nil && w.matches(c) && f.ok(w) && w.hasEgress(won.Egress) {
			return Pick{Exit: w.exit, Egress: won.Egress}, nil
		}
		p.storeState.observe(p, "rebind", p.sessions.Rebind(ctx, key, b, ttl))
		return Pick{Exit: m.exit, Egress: b.Egress, Rebound: true}, nil
	}
	return Pick{Exit: m.exit, Egress: b.Egress}, nil
}

// sessionStoreState logs the session store failing and answering again once
// each, not per pick: while a shared store (Redis) is out, every sticky pick
// fails the same way and is served by hashing alone.
type sessionStoreState struct {
	down atomic.Bool
}

// observe notes the result of one call to the session store.
func (st *sessionStoreState) observe(p *Pool, op string, err error) {
	if err == nil {
		if st.down.CompareAndSwap(true, false) {
			p.log.Info("session store answering again")
		}
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the customer left; says nothing about the store
	}
	if st.down.CompareAndSwap(false, true) {
		p.log.Warn("session store failing; sticky sessions picked by hashing until it answers", "op", op, "err", err)
	}
}

// hrwChoose is rendezvous hashing with the same DC affinity and panic rules
// as the policies.
func (p *Pool) hrwChoose(g *group, f *filter, kh uint64) *member {
	if g.local != nil && !f.panic {
		if m := hrw(g.local.ms, f, kh); m != nil {
			return m
		}
		return hrw(g.remote.ms, f, kh)
	}
	return hrw(g.all.ms, f, kh)
}

// hrw returns the pickable member with the highest score for key hash kh.
func hrw(ms []*member, f *filter, kh uint64) *member {
	var best *member
	var bestScore uint64
	for _, m := range ms {
		if !f.ok(m) {
			continue
		}
		if s := hrwScore(kh, m.idHash); best == nil || s > bestScore {
			best, bestScore = m, s
		}
	}
	return best
}

// hrwEgress returns m's egress IP with the highest score for key hash kh.
func hrwEgress(m *member, kh uint64) netip.Addr {
	if len(m.egressHash) == 0 {
		return netip.Addr{}
	}
	best := 0
	var bestScore uint64
	for i, h := range m.egressHash {
		if s := hrwScore(kh, h); i == 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	return m.exit.Egress[best]
}
