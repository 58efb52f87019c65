package gateway

import (
	"cmp"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Activity is what customers did through this gateway since it started, for
// the operator (the admin API's /api/activity, the dashboard's customers
// view, `farmgate status`). Other gateways' customers are not in it.
type Activity struct {
	// Customers are the customers seen since the gateway started, most
	// traffic first.
	Customers []CustomerActivity `json:"customers"`
	// LastMinute counts the requests and tunnels that ended, or were
	// refused, in the last 60 seconds, logins refused included.
	LastMinute Window `json:"last_minute"`
}

// CustomerActivity is one customer's share of Activity.
type CustomerActivity struct {
	User string `json:"user"`
	// LiveTunnels are the customer's CONNECT and SOCKS5 tunnels open now.
	LiveTunnels int `json:"live_tunnels"`
	// Requests counts the tunnels and requests that ended or were refused
	// after the customer logged in; Errors those refused or failed, by
	// the X-Farmgate-Error reason the customer got (a customer who left
	// before the answer is no error).
	Requests       int64            `json:"requests"`
	Errors         int64            `json:"errors"`
	ErrorsByReason map[string]int64 `json:"errors_by_reason,omitempty"`
	// BytesUp and BytesDown are billed bytes, as farmgate_bytes_total
	// counts them.
	BytesUp   int64 `json:"bytes_up"`
	BytesDown int64 `json:"bytes_down"`
}

// Window is a count of requests over a recent span.
type Window struct {
	Requests       int64            `json:"requests"`
	Errors         int64            `json:"errors"`
	ErrorsByReason map[string]int64 `json:"errors_by_reason,omitempty"`
}

// reasonNames lists the refusal reasons in a fixed order; reasonIndex is
// the inverse. Counters per reason are arrays indexed by it.
var reasonNames, reasonIndex = func() ([]string, map[string]int) {
	names := make([]string, 0, len(refusals))
	for r := range refusals {
		names = append(names, r)
	}
	sort.Strings(names)
	idx := make(map[string]int, len(names))
	for i, r := range names {
		idx[r] = i
	}
	return names, idx
}()

// maxActivityUsers bounds the customers activity keeps apart; beyond it
// newcomers are counted under activityOverflow. Customers are those of the
// store (logged in), so this is the size of a very large farm's list.
const (
	maxActivityUsers = 100_000
	activityOverflow = "other"
)

// userActivity is one customer's counters; the atomic fields are updated
// without the activity's lock.
type userActivity struct {
	requests, errors, up, down atomic.Int64
	reasons                    []atomic.Int64 // by reasonIndex
}

// windowSlots is the last minute at a second a slot.
const windowSlots = 60

// activity counts per customer and over the last minute. The zero value is
// not usable: use newActivity.
type activity struct {
	now   func() time.Time
	users sync.Map // user → *userActivity
	count atomic.Int64

	mu    sync.Mutex // guards slots
	slots [windowSlots]windowSlot
}

type windowSlot struct {
	sec      int64 // the Unix second the slot counts; stale when older than a minute
	requests int64
	errors   int64
	byReason []int64
}

func newActivity(now func() time.Time) *activity {
	if now == nil {
		now = time.Now
	}
	return &activity{now: now}
}

// user returns user's counters, created on first use.
func (a *activity) user(name string) *userActivity {
	if u, ok := a.users.Load(name); ok {
		return u.(*userActivity)
	}
	if a.count.Load() >= maxActivityUsers {
		name = activityOverflow
		if u, ok := a.users.Load(name); ok {
			return u.(*userActivity)
		}
	}
	u, loaded := a.users.LoadOrStore(name, &userActivity{reasons: make([]atomic.Int64, len(reasonNames))})
	if !loaded {
		a.count.Add(1)
	}
	return u.(*userActivity)
}

// ended counts a request or tunnel that ended or was refused with reason
// ("" for served); customer is "" when no customer logged in.
func (a *activity) ended(customer, reason string) {
	failed := reason != "" && reason != reasonClientClosed
	ri, known := reasonIndex[reason]
	if customer != "" {
		u := a.user(customer)
		u.requests.Add(1)
		if failed {
			u.errors.Add(1)
			if known {
				u.reasons[ri].Add(1)
			}
		}
	}
	sec := a.now().Unix()
	a.mu.Lock()
	s := &a.slots[sec%windowSlots]
	if s.sec != sec {
		clear(s.byReason)
		s.sec, s.requests, s.errors = sec, 0, 0
	}
	s.requests++
	if failed {
		s.errors++
		if known {
			if s.byReason == nil {
				s.byReason = make([]int64, len(reasonNames))
			}
			s.byReason[ri]++
		}
	}
	a.mu.Unlock()
}

// refusedAfterLogin counts a request of customer refused after the login
// succeeded (its targeting is malformed or not allowed) against the
// customer; the access event that follows carries no customer and counts
// in the last minute.
func (a *activity) refusedAfterLogin(customer, reason string) {
	u := a.user(customer)
	u.requests.Add(1)
	u.errors.Add(1)
	if ri, ok := reasonIndex[reason]; ok {
		u.reasons[ri].Add(1)
	}
}

// bytes adds billed bytes to customer.
func (a *activity) bytes(customer string, up, down int64) {
	if customer == "" {
		return
	}
	u := a.user(customer)
	u.up.Add(up)
	u.down.Add(down)
}

// lastMinute sums the slots of the last 60 seconds.
func (a *activity) lastMinute() Window {
	now := a.now().Unix()
	var w Window
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.slots {
		if s.sec <= now-windowSlots || s.sec > now {
			continue
		}
		w.Requests += s.requests
		w.Errors += s.errors
		for i, n := range s.byReason {
			if n > 0 {
				if w.ErrorsByReason == nil {
					w.ErrorsByReason = map[string]int64{}
				}
				w.ErrorsByReason[reasonNames[i]] += n
			}
		}
	}
	return w
}

// snapshot returns every customer's counters, most traffic first (bytes,
// then requests, then name).
func (a *activity) snapshot() []CustomerActivity {
	var out []CustomerActivity
	a.users.Range(func(k, v any) bool {
		u := v.(*userActivity)
		c := CustomerActivity{User: k.(string), Requests: u.requests.Load(), Errors: u.errors.Load(),
			BytesUp: u.up.Load(), BytesDown: u.down.Load()}
		for i := range u.reasons {
			if n := u.reasons[i].Load(); n > 0 {
				if c.ErrorsByReason == nil {
					c.ErrorsByReason = map[string]int64{}
				}
				c.ErrorsByReason[reasonNames[i]] = n
			}
		}
		out = append(out, c)
		return true
	})
	slices.SortFunc(out, func(x, y CustomerActivity) int {
		return cmp.Or(cmp.Compare(y.BytesUp+y.BytesDown, x.BytesUp+x.BytesDown), cmp.Compare(y.Requests, x.Requests), cmp.Compare(x.User, y.User))
	})
	return out
}

// Activity returns what customers did through this gateway: counts since
// it started, live tunnels now, and the last minute.
func (g *Gateway) Activity() Activity {
	live := map[string]int{}
	g.tunnels.Range(func(k, _ any) bool {
		if t := k.(*tunnel); t.customer != nil {
			live[t.customer.User]++
		}
		return true
	})
	cs := g.activity.snapshot()
	for i := range cs {
		cs[i].LiveTunnels = live[cs[i].User]
		delete(live, cs[i].User)
	}
	for user, n := range live { // a tunnel still opening has no count yet
		cs = append(cs, CustomerActivity{User: user, LiveTunnels: n})
	}
	if cs == nil {
		cs = []CustomerActivity{}
	}
	return Activity{Customers: cs, LastMinute: g.activity.lastMinute()}
}
