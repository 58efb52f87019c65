package pool

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Pool knows the exits and picks one per tunnel. Create it with [New]; drive
// its health with [Pool.Run]. All methods are safe for concurrent use.
type Pool struct {
	cfg      Config
	log      *slog.Logger
	now      func() time.Time
	rng      *rng
	sessions SessionStore
	// storeState logs the session store's outages once each.
	storeState sessionStoreState

	snap atomic.Pointer[snapshot]

	mu     sync.Mutex // guards exits, states, pools and serialises snapshot builds
	exits  map[string]*Exit
	states map[string]*exitState
	pools  map[string]*poolState

	running atomic.Bool   // Run is active
	picks   atomic.Uint64 // least_conn picks so far: the clock of its recency stamps

	leaveMu sync.Mutex
	onLeave []func(id string) // appended to only: a copy of the header is a stable list
}

// OnLeave registers f, called with an exit's id when it is removed, starts
// draining, goes down or is ejected: a gateway then lets go of the idle
// connections it keeps to it, which would otherwise hold a draining exit
// up (an exit on a static list that drains is seen as down by the
// probes). f must not call back into the pool.
func (p *Pool) OnLeave(f func(id string)) {
	p.leaveMu.Lock()
	defer p.leaveMu.Unlock()
	p.onLeave = append(p.onLeave, f)
}

func (p *Pool) left(ids ...string) {
	p.leaveMu.Lock()
	fs := p.onLeave
	p.leaveMu.Unlock()
	for _, id := range ids {
		for _, f := range fs {
			f(id)
		}
	}
}

// poolState is a pool's lasting state across snapshots.
type poolState struct {
	name  string
	panic atomic.Bool // more than PanicThreshold% unhealthy: ignore health

	mu sync.Mutex // serialises ejection decisions and panic updates of this pool
}

// New returns an empty pool. logger may be nil (slog.Default).
func New(cfg Config, logger *slog.Logger) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("creating pool: %w", err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	p := &Pool{
		cfg:      cfg,
		log:      logger.With("component", "pool"),
		now:      cfg.Now,
		rng:      newRNG(cfg.Seed),
		sessions: cfg.Sessions,
		exits:    make(map[string]*Exit),
		states:   make(map[string]*exitState),
		pools:    make(map[string]*poolState),
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.sessions == nil {
		p.sessions = NewMemorySessions(p.now)
	}
	p.snap.Store(&snapshot{
		byID:   map[string]*member{},
		groups: map[groupKey]*group{},
		pools:  map[string]*poolView{},
	})
	return p, nil
}

// policyFor returns the policy configured for pool.
func (p *Pool) policyFor(pool string) policy {
	name := p.cfg.DefaultPolicy
	if n, ok := p.cfg.Policies[pool]; ok {
		name = n
	}
	return parsePolicy(name)
}

// validExit checks an exit after normalise.
func validExit(e *Exit) error {
	switch {
	case e.ID == "":
		return fmt.Errorf("exit ID: empty")
	case e.Pool == "":
		return fmt.Errorf("exit %s: Pool: empty", e.ID)
	case e.Weight < 0:
		return fmt.Errorf("exit %s: Weight %d: negative", e.ID, e.Weight)
	case e.Capacity < 0:
		return fmt.Errorf("exit %s: Capacity %d: negative", e.ID, e.Capacity)
	}
	return nil
}

// Set replaces the whole set of exits. Exits that stay keep their state
// (health, ejections, tunnels, drain); invalid exits are logged and skipped.
func (p *Pool) Set(exits []Exit) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := make(map[string]*Exit, len(exits))
	for i := range exits {
		e := exits[i]
		normalise(&e)
		if err := validExit(&e); err != nil {
			p.log.Warn("exit skipped", "err", err)
			continue
		}
		next[e.ID] = &e
	}
	added, removed := 0, 0
	for id := range p.exits {
		if _, ok := next[id]; !ok {
			delete(p.states, id)
			removed++
		}
	}
	for id := range next {
		if _, ok := p.states[id]; !ok {
			p.states[id] = newExitState()
			added++
		}
	}
	p.exits = next
	p.rebuildLocked()
	p.log.Info("exits set", "exits", len(next), "added", added, "removed", removed)
}

// Upsert adds an exit or updates the one with the same ID, keeping its state.
// An invalid exit is logged and ignored.
func (p *Pool) Upsert(e Exit) {
	normalise(&e)
	if err := validExit(&e); err != nil {
		p.log.Warn("exit skipped", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	old, known := p.exits[e.ID]
	if known && sameExit(old, &e) {
		return // a repeated announcement: nothing to rebuild
	}
	p.exits[e.ID] = &e
	if !known {
		p.states[e.ID] = newExitState()
	}
	p.rebuildLocked()
	if known {
		p.log.Info("exit updated", "exit", e.ID, "pool", e.Pool, "dc", e.DC)
	} else {
		p.log.Info("exit added", "exit", e.ID, "pool", e.Pool, "dc", e.DC, "country", e.Country)
	}
}

// Apply upserts and removes many exits with one snapshot build: what a
// discoverer should call for a burst of events, since every Upsert or Remove
// rebuilds the indexes (about 20 ms for 10 000 exits). Removals apply after
// upserts; invalid exits are logged and skipped.
func (p *Pool) Apply(upserts []Exit, removes []string) {
	p.mu.Lock()
	added, updated := 0, 0
	for _, e := range upserts {
		normalise(&e)
		if err := validExit(&e); err != nil {
			p.log.Warn("exit skipped", "err", err)
			continue
		}
		if _, known := p.exits[e.ID]; known {
			updated++
		} else {
			p.states[e.ID] = newExitState()
			added++
		}
		p.exits[e.ID] = &e
	}
	var gone []string
	for _, id := range removes {
		if _, ok := p.exits[id]; ok {
			delete(p.exits, id)
			delete(p.states, id)
			gone = append(gone, id)
		}
	}
	p.rebuildLocked()
	p.log.Info("exits applied", "exits", len(p.exits), "added", added, "updated", updated, "removed", len(gone))
	p.mu.Unlock()
	p.left(gone...)
}

// Remove forgets an exit and its state; unknown ids are ignored. Tunnels
// already open through it are the caller's to finish.
func (p *Pool) Remove(id string) {
	p.mu.Lock()
	e, ok := p.exits[id]
	if !ok {
		p.mu.Unlock()
		return
	}
	delete(p.exits, id)
	delete(p.states, id)
	p.rebuildLocked()
	p.log.Info("exit removed", "exit", id, "pool", e.Pool, "dc", e.DC)
	p.mu.Unlock()
	p.left(id)
}

// rebuildLocked builds and publishes a snapshot of p.exits. p.mu must be held.
func (p *Pool) rebuildLocked() {
	exits := make([]*Exit, 0, len(p.exits))
	for _, e := range p.exits {
		exits = append(exits, e)
		if p.pools[e.Pool] == nil {
			p.pools[e.Pool] = &poolState{name: e.Pool}
		}
	}
	slices.SortFunc(exits, func(a, b *Exit) int { return cmp.Compare(a.ID, b.ID) })
	s := buildSnapshot(exits, p.states, p.pools, p.policyFor, p.cfg.LocalDC)
	p.snap.Store(s)
	now := p.now().UnixNano()
	for name, v := range s.pools {
		p.updatePanic(v.ps, s.pools[name].members, now)
	}
}

// sameExit reports whether a and b describe the same exit identically.
func sameExit(a, b *Exit) bool {
	return a.ID == b.ID && a.DC == b.DC && a.Pool == b.Pool && a.Country == b.Country &&
		a.City == b.City && a.Weight == b.Weight && a.Capacity == b.Capacity &&
		a.Addr == b.Addr && slices.Equal(a.Egress, b.Egress)
}

// SetPolicies changes the selection policies (a configuration reload):
// picks use them from the next snapshot on, which is built at once. The
// exits' state (health, tunnels, latency) is kept.
func (p *Pool) SetPolicies(defaultPolicy string, perPool map[string]string) error {
	c := DefaultConfig()
	c.DefaultPolicy, c.Policies = defaultPolicy, perPool
	if err := c.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg.DefaultPolicy = defaultPolicy
	p.cfg.Policies = maps.Clone(perPool)
	p.rebuildLocked()
	p.log.Info("selection policies changed", "default", defaultPolicy, "per_pool", len(perPool))
	return nil
}
