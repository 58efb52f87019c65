package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/pool"
)

// admission is a customer let in, with what they asked for.
type admission struct {
	customer *auth.Customer
	target   auth.Target
	crit     pool.Criteria
}

// admit authenticates the Proxy-Authorization value and turns the username's
// targeting into pool criteria. Credentials are checked before the targeting,
// so a stranger learns nothing about the grammar's errors.
func (g *Gateway) admit(ctx context.Context, proxyAuth string, client netip.Addr) (admission, error) {
	user, pass, ok := parseProxyAuth(proxyAuth)
	if !ok {
		return admission{}, errNoCredentials
	}
	return g.admitCredentials(ctx, user, pass, client)
}

// admitCredentials is admit for a user name (with targeting) and password
// however they arrived (HTTP Basic, SOCKS5 user/password).
func (g *Gateway) admitCredentials(ctx context.Context, user, pass string, client netip.Addr) (admission, error) {
	target, perr := auth.ParseUsername(user)
	account := target.User
	if perr != nil {
		// Authenticate the account part anyway: bad credentials win over
		// bad targeting.
		account, _, _ = strings.Cut(user, "-")
	}
	cust, err := (*g.authn.Load()).AuthenticateFrom(ctx, account, pass, client)
	if err != nil {
		return admission{}, fmt.Errorf("authenticate %q: %w", account, err)
	}
	if perr != nil {
		g.activity.refusedAfterLogin(cust.User, replyFor(perr).reason)
		return admission{}, perr
	}
	poolName := cust.Pool(target.Zone)
	if !cust.AllowsPool(poolName) {
		err := fmt.Errorf("zone %q for %s: %w", poolName, cust.User, errPoolForbidden)
		g.activity.refusedAfterLogin(cust.User, replyFor(err).reason)
		return admission{}, err
	}
	a := admission{customer: cust, target: target}
	a.crit = pool.Criteria{
		Pool:     poolName,
		Country:  target.Country,
		City:     target.City,
		DC:       target.DC,
		Customer: cust.User,
		Session:  target.Session,
		SessTime: target.SessTime,
	}
	if a.crit.Session != "" && a.crit.SessTime <= 0 {
		a.crit.SessTime = 10 * time.Minute
	}
	return a, nil
}

// remoteIP is the customer's address, for the IP allowlist.
func remoteIP(addr string) netip.Addr {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// targeting is the username's targeting without the user, for the access
// log: "zone-resi-country-US-session-s1".
func (a *admission) targeting() string {
	t := a.target.String()
	if i := strings.IndexByte(t, '-'); i >= 0 {
		return t[i+1:]
	}
	return ""
}

// CutRevoked ends the live tunnels of every customer allowed reports false
// for (disabled, expired or deleted since the tunnel opened), and returns
// how many it ended. A reload of the customers, or a change announced by
// the customer store, calls it: new requests are refused at once anyway,
// and a long tunnel should not outlive its account.
func (g *Gateway) CutRevoked(allowed func(user string) bool) int {
	verdict := map[string]bool{} // one question per customer
	n := 0
	g.tunnels.Range(func(k, _ any) bool {
		t := k.(*tunnel)
		user := t.customer.User
		ok, seen := verdict[user]
		if !seen {
			ok = allowed(user)
			verdict[user] = ok
		}
		if !ok {
			g.logger.Info("customer no longer allowed, cutting tunnel", "customer", user, "exit", t.exit)
			t.revoke()
			n++
		}
		return true
	})
	return n
}

// ChangingStore is a customer store that tells of changes to customers as
// they happen, on every gateway (auth.RedisStore).
type ChangingStore interface {
	// OnChange sets f to be told of each changed user name, or "*".
	OnChange(f func(user string))
	// Allows reports whether user may log in now; an error means the
	// store could not tell.
	Allows(ctx context.Context, user string) (bool, error)
}

// remoteStore is a customer store that is asked over the network
// (auth.RedisStore): it may fail to answer.
type remoteStore interface {
	Allows(ctx context.Context, user string) (bool, error)
}

// allowsUnlessTold reports whether user keeps their tunnels: unless s says
// no. When s cannot tell, the tunnels stay: a store outage must not cut
// every customer.
func allowsUnlessTold(ctx context.Context, s remoteStore, user string) bool {
	ok, err := s.Allows(ctx, user)
	return ok || err != nil
}

// FollowRevocations makes every change s tells of end the live tunnels of
// the customers it disabled, expired or deleted. Call it before s runs.
// When s cannot tell, the tunnels stay: a store outage must not cut every
// customer.
func (g *Gateway) FollowRevocations(s ChangingStore) {
	s.OnChange(func(user string) {
		// Off the store's goroutine; it ends with the store's answers,
		// which g.ctx bounds at shutdown.
		g.goBackground(func() {
			n := g.CutRevoked(func(u string) bool {
				if user != "*" && u != user {
					return true
				}
				return allowsUnlessTold(g.ctx, s, u)
			})
			if n > 0 {
				g.logger.Info("cut the tunnels of customers disabled or removed", "user", user, "tunnels", n)
			}
		})
	})
}

// SetAuthenticator replaces the customer store (a configuration reload);
// requests already admitted keep the customer they were admitted as.
func (g *Gateway) SetAuthenticator(a Authenticator) {
	g.authn.Store(&a)
}
