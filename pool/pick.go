package pool

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Criteria is what a tunnel asks of its exit.
type Criteria struct {
	// Pool is the pool name (the username's zone). Required.
	Pool string
	// Country, City and DC filter the pool's exits; "" is any. DC is a hard
	// filter; without it, exits in Config.LocalDC are preferred.
	Country, City, DC string
	// Customer and Session identify a sticky session; Session "" means none
	// (a new exit and egress IP per pick, by the pool's policy).
	Customer, Session string
	// SessTime is the sticky session's idle lifetime, sliding on each pick;
	// 0 means Config.SessionTTL.
	SessTime time.Duration
	// Exclude lists exit ids already tried for this tunnel (failover). The
	// caller owns the slice; the pool does not retain it.
	Exclude []string
}

// Pick is the exit and egress IP chosen for one tunnel.
type Pick struct {
	// Exit is the chosen exit; treat it as read-only.
	Exit *Exit
	// Egress is the egress IP to use; zero if Exit.Egress is empty.
	Egress netip.Addr
	// Rebound is set when a sticky session moved because its bound exit is
	// gone, unhealthy, excluded or no longer matches.
	Rebound bool
}

// Pick chooses an exit for one tunnel. It returns an error wrapping
// ErrNoExit, naming what was asked, when no exit matches or none can take a
// tunnel. Pool, City and DC are compared in lower case and Country in upper
// case. On the non-sticky path it takes no lock and allocates nothing (except
// for the error, or to change the case of a Pool, City or DC not given in
// lower case). The sticky path calls the SessionStore; a store error is logged and
// the pick falls back to rendezvous hashing without storing.
func (p *Pool) Pick(ctx context.Context, c Criteria) (Pick, error) {
	c.Pool = strings.ToLower(c.Pool)
	c.Country = upperCountry(c.Country)
	c.City = strings.ToLower(c.City)
	c.DC = strings.ToLower(c.DC)
	s := p.snap.Load()
	g := s.groups[groupKey{pool: c.Pool, country: c.Country, city: c.City, dc: c.DC}]
	if g == nil {
		return Pick{}, noExit(&c, "no exit matches")
	}
	f := filter{now: p.nowNS, panic: g.ps.panic.Load(), exclude: c.Exclude, picks: &p.picks}
	if c.Session != "" {
		return p.pickSticky(ctx, s, g, &c, &f)
	}
	m := p.choose(g, &c, &f)
	if m == nil {
		return Pick{}, noExit(&c, "no matching exit can take a tunnel")
	}
	return Pick{Exit: m.exit, Egress: p.randomEgress(m)}, nil
}

// choose applies the group's policy with DC affinity: the local DC's
// pickable exits first, then every other DC's. In panic mode health is
// ignored and so is the local preference: the pick spreads over all of the
// matching exits that are not draining.
func (p *Pool) choose(g *group, c *Criteria, f *filter) *member {
	if g.local != nil && !f.panic {
		if m := g.pol.choose(g.local, f, p.rng); m != nil {
			return m
		}
		return g.pol.choose(g.remote, f, p.rng)
	}
	return g.pol.choose(g.all, f, p.rng)
}

// countryCodes holds every two-letter upper-case code, so that upper-casing
// a country code (usernames carry them in lower case) does not allocate.
var countryCodes = func() (t [26 * 26]string) {
	for i := range t {
		t[i] = string([]byte{'A' + byte(i/26), 'A' + byte(i%26)})
	}
	return t
}()

// upperCountry upper-cases a country code without allocating when it is two
// ASCII letters.
func upperCountry(s string) string {
	if len(s) == 2 {
		a, b := s[0]|0x20, s[1]|0x20 // lower-case if a letter
		if a >= 'a' && a <= 'z' && b >= 'a' && b <= 'z' {
			return countryCodes[int(a-'a')*26+int(b-'a')]
		}
	}
	return strings.ToUpper(s)
}

// randomEgress picks one of m's egress IPs uniformly (rotation per request).
func (p *Pool) randomEgress(m *member) netip.Addr {
	switch n := len(m.exit.Egress); n {
	case 0:
		return netip.Addr{}
	case 1:
		return m.exit.Egress[0]
	default:
		return m.exit.Egress[p.rng.IntN(n)]
	}
}

func (p *Pool) nowNS() int64 { return p.now().UnixNano() }

// noExit wraps ErrNoExit with the criteria asked.
func noExit(c *Criteria, why string) error {
	return fmt.Errorf("picking exit (pool=%q country=%q city=%q dc=%q excluded=%d): %s: %w",
		c.Pool, c.Country, c.City, c.DC, len(c.Exclude), why, ErrNoExit)
}
