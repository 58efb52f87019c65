package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Meter counts bytes per customer and per pool and answers whether a
// customer is over their monthly quota. MemoryMeter keeps usage in this
// process; RedisMeter shares it through Redis. Both are safe for
// concurrent use.
//
// Add is the gateway's hot path (called as tunnel bytes move): it touches
// memory only and does not allocate for a (user, pool) it has seen.
// OverQuota is cheap (memory only): the gateway calls it before a new
// tunnel (402 quota_exceeded) and every second or so for live tunnels.
// Usage reads this month's and today's usage (calendar periods in UTC).
type Meter interface {
	Add(user, pool string, up, down int64)
	OverQuota(c *Customer) bool
	Usage(ctx context.Context, user string) (UsageReport, error)
}

// Traffic is bytes up (customer → origin) and down.
type Traffic struct {
	Up   int64 `json:"up"`
	Down int64 `json:"down"`
}

// Total returns Up + Down, what a quota counts.
func (t Traffic) Total() int64 { return t.Up + t.Down }

// UsageReport is a customer's usage this month and today (UTC), in total
// and per pool.
type UsageReport struct {
	User        string             `json:"user"`
	Month       string             `json:"month"` // 2026-11
	Day         string             `json:"day"`   // 2026-11-05
	ThisMonth   Traffic            `json:"this_month"`
	Today       Traffic            `json:"today"`
	MonthByPool map[string]Traffic `json:"month_by_pool"`
	TodayByPool map[string]Traffic `json:"today_by_pool"`
}

// MeterConfig tunes a MemoryMeter or a RedisMeter. The zero value is
// usable: every zero field takes its default.
type MeterConfig struct {
	// Prefix starts every Redis key (RedisMeter). Default: "farmgate:".
	Prefix string
	// Timeout bounds each Redis call (RedisMeter). Default: 2s.
	Timeout time.Duration
	// FlushInterval is how often Run writes the counted usage out (and, for
	// RedisMeter, reads back the month totals of customers with a quota).
	// Usage is attributed to the UTC day and month of the flush that picks
	// it up, so at most one interval of bytes lands in the next period.
	// Default: 1s.
	FlushInterval time.Duration
	// MaxPendingKeys bounds the (user, pool, day) entries held while Redis
	// is unreachable; past it the oldest are dropped and the number logged.
	// Default: 100000.
	MaxPendingKeys int
	// Now is the clock that decides the day and month. Default: time.Now.
	Now func() time.Time
	// Logger receives outages and drops. Default: slog.Default().
	Logger *slog.Logger
}

// DefaultMeterConfig returns the configuration with every default filled in.
func DefaultMeterConfig() MeterConfig {
	return MeterConfig{
		Prefix:         DefaultPrefix,
		Timeout:        2 * time.Second,
		FlushInterval:  time.Second,
		MaxPendingKeys: 100_000,
		Now:            time.Now,
		Logger:         slog.Default(),
	}
}

// Validate reports the first field that is wrong, by name.
func (c MeterConfig) Validate() error {
	switch {
	case c.Timeout < 0:
		return errors.New("meter config: Timeout: must not be negative")
	case c.FlushInterval < 0:
		return errors.New("meter config: FlushInterval: must not be negative")
	case c.MaxPendingKeys < 0:
		return errors.New("meter config: MaxPendingKeys: must not be negative")
	}
	return nil
}

func (c MeterConfig) withDefaults() MeterConfig {
	d := DefaultMeterConfig()
	if c.Prefix == "" {
		c.Prefix = d.Prefix
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = d.FlushInterval
	}
	if c.MaxPendingKeys == 0 {
		c.MaxPendingKeys = d.MaxPendingKeys
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	return c
}

// period is a UTC day and month.
type period struct {
	day, month string // 2026-11-05, 2026-11
}

func periodOf(t time.Time) period {
	t = t.UTC()
	return period{day: t.Format(time.DateOnly), month: t.Format("2006-01")}
}

// meterKey names one counter.
type meterKey struct{ user, pool string }

// counter is the live, not yet drained usage of one (user, pool).
type counter struct {
	up, down atomic.Int64
	u        *userState
}

// userState is what OverQuota reads for one user.
type userState struct {
	unflushed atomic.Int64 // bytes in counters, not drained yet
	pending   atomic.Int64 // bytes drained, not written yet
	month     atomic.Int64 // month total as last read from the sink
	monthOf   atomic.Pointer[string]
	watched   atomic.Bool // has a quota: read its month total on flush
}

const meterShards = 16

type meterShard struct {
	mu sync.RWMutex // guards m
	m  map[meterKey]*counter
	_  [40]byte
}

// pendKey is one unit of pending usage.
type pendKey struct {
	user, pool string
	p          period
}

type pendVal struct {
	t   Traffic
	seq uint64 // insertion order, for drop-oldest
}

// batch is usage on its way to the store under a number. Numbers increase
// per meter, and a store applies a number once per user: a batch whose
// write failed is sent again unchanged and under the same number, so a
// write that reached the store although its reply was lost is not counted
// twice.
type batch struct {
	seq     uint64
	entries map[pendKey]*pendVal
}

// usageSink is where a meter writes drained usage.
type usageSink interface {
	// write stores b, unless it stored b (the same seq) before, and returns
	// the month totals of watch in month.
	write(ctx context.Context, b *batch, watch []string, month string) (map[string]int64, error)
	// read returns user's usage in p.
	read(ctx context.Context, user string, p period) (UsageReport, error)
}

// meter is the part MemoryMeter and RedisMeter share.
type meter struct {
	cfg    MeterConfig
	logger *slog.Logger
	sink   usageSink
	shards [meterShards]meterShard

	usersMu sync.RWMutex // guards users
	users   map[string]*userState

	kick chan struct{} // asks Run to flush soon (a new quota user)

	flushMu  sync.Mutex // guards the fields below; serializes flushes
	pending  map[pendKey]*pendVal
	seq      uint64 // of pending entries, for drop-oldest
	batchSeq uint64 // number of the last batch
	inDoubt  *batch // written, not confirmed: goes again before anything newer
}

func newMeter(cfg MeterConfig, sink usageSink, logger *slog.Logger) *meter {
	m := &meter{cfg: cfg, logger: logger, sink: sink, users: make(map[string]*userState),
		kick: make(chan struct{}, 1), pending: make(map[pendKey]*pendVal)}
	for i := range m.shards {
		m.shards[i].m = make(map[meterKey]*counter)
	}
	return m
}

func (m *meter) shard(user string) *meterShard {
	var h uint32 = 2166136261
	for i := 0; i < len(user); i++ {
		h = (h ^ uint32(user[i])) * 16777619
	}
	return &m.shards[h%meterShards]
}

// Add counts up and down bytes of user in pool. It does not allocate for a
// (user, pool) seen before.
func (m *meter) Add(user, pool string, up, down int64) {
	s := m.shard(user)
	s.mu.RLock()
	c := s.m[meterKey{user, pool}]
	s.mu.RUnlock()
	if c == nil {
		c = m.newCounter(s, user, pool)
	}
	c.up.Add(up)
	c.down.Add(down)
	c.u.unflushed.Add(up + down)
}

func (m *meter) newCounter(s *meterShard, user, pool string) *counter {
	u := m.user(user)
	k := meterKey{strings.Clone(user), strings.Clone(pool)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.m[k]; ok {
		return c
	}
	c := &counter{u: u}
	s.m[k] = c
	return c
}

// user returns the state of user, creating it.
func (m *meter) user(user string) *userState {
	m.usersMu.RLock()
	u := m.users[user]
	m.usersMu.RUnlock()
	if u != nil {
		return u
	}
	m.usersMu.Lock()
	defer m.usersMu.Unlock()
	if u = m.users[user]; u == nil {
		u = &userState{}
		m.users[strings.Clone(user)] = u
	}
	return u
}

// OverQuota reports whether c has used QuotaBytes this month: the month
// total last read from the store plus what this process has not written
// yet. The first call for a customer asks Run to read their total soon.
func (m *meter) OverQuota(c *Customer) bool {
	if c.QuotaBytes <= 0 {
		return false
	}
	u := m.user(c.User)
	if !u.watched.Load() && !u.watched.Swap(true) {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	used := u.unflushed.Load() + u.pending.Load()
	if mo := u.monthOf.Load(); mo != nil && *mo == periodOf(m.cfg.Now()).month {
		used += u.month.Load()
	}
	return used >= c.QuotaBytes
}

// drainLocked moves the live counters into pending, attributed to p.
func (m *meter) drainLocked(p period) {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		for k, c := range s.m {
			up, down := c.up.Swap(0), c.down.Swap(0)
			if up == 0 && down == 0 {
				continue
			}
			c.u.unflushed.Add(-(up + down))
			c.u.pending.Add(up + down)
			pk := pendKey{k.user, k.pool, p}
			v := m.pending[pk]
			if v == nil {
				m.seq++
				v = &pendVal{seq: m.seq}
				m.pending[pk] = v
			}
			v.t.Up += up
			v.t.Down += down
		}
		s.mu.RUnlock()
	}
	held := len(m.pending)
	if m.inDoubt != nil {
		held += len(m.inDoubt.entries)
	}
	if over := held - m.cfg.MaxPendingKeys; over > 0 {
		m.dropOldestLocked(over + m.cfg.MaxPendingKeys/10)
	}
}

// dropOldestLocked drops the n oldest pending entries.
func (m *meter) dropOldestLocked(n int) {
	keys := make([]pendKey, 0, len(m.pending))
	for k := range m.pending {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b pendKey) int { return cmp.Compare(m.pending[a].seq, m.pending[b].seq) })
	var bytes int64
	for _, k := range keys[:min(n, len(keys))] {
		bytes += m.pending[k].t.Total()
		if u := m.user(k.user); u != nil {
			u.pending.Add(-m.pending[k].t.Total())
		}
		delete(m.pending, k)
	}
	m.logger.Error("usage buffer full while the store is unreachable; dropped the oldest entries",
		"dropped_entries", n, "dropped_bytes", bytes, "max_pending_keys", m.cfg.MaxPendingKeys)
}

// Flush writes all usage counted so far to the store now. On error the
// usage stays pending for the next flush.
func (m *meter) Flush(ctx context.Context) error {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	p := periodOf(m.cfg.Now())
	m.drainLocked(p)
	var watch []string
	m.usersMu.RLock()
	for name, u := range m.users {
		if u.watched.Load() {
			watch = append(watch, name)
		}
	}
	m.usersMu.RUnlock()
	// A batch that may have reached the store goes first, unchanged: only
	// one batch is ever in doubt, and the store can tell a retry by its
	// number.
	if b := m.inDoubt; b != nil {
		if _, err := m.sink.write(ctx, b, nil, p.month); err != nil {
			return err
		}
		m.settle(b)
		m.inDoubt = nil
	}
	if len(m.pending) == 0 && len(watch) == 0 {
		return nil
	}
	m.batchSeq++
	b := &batch{seq: m.batchSeq, entries: m.pending}
	m.pending = make(map[pendKey]*pendVal)
	if len(b.entries) > 0 {
		m.inDoubt = b
	}
	totals, err := m.sink.write(ctx, b, watch, p.month)
	if err != nil {
		return err
	}
	m.settle(b)
	m.inDoubt = nil
	for name, total := range totals {
		u := m.user(name)
		u.month.Store(total)
		mo := p.month
		u.monthOf.Store(&mo)
	}
	return nil
}

// settle takes a written batch out of the users' pending bytes.
func (m *meter) settle(b *batch) {
	for k, v := range b.entries {
		m.user(k.user).pending.Add(-v.t.Total())
	}
}

// pendingLen returns the number of pending entries.
func (m *meter) pendingLen() int {
	m.flushMu.Lock()
	defer m.flushMu.Unlock()
	n := len(m.pending)
	if m.inDoubt != nil {
		n += len(m.inDoubt.entries)
	}
	return n
}

// Run flushes every FlushInterval (and soon after a customer with a quota
// is first seen) until ctx ends. Failures leave the usage pending; the
// sink logs the outage once. It returns nil when ctx ends; call Close
// afterwards for the last flush.
func (m *meter) Run(ctx context.Context) error {
	every := m.cfg.FlushInterval
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-m.kick:
		}
		m.flushOnce(ctx)
		t.Reset(every - rand.N(every/10+1)) // at least once per interval
	}
}

func (m *meter) flushOnce(ctx context.Context) {
	defer recoverLoop(m.logger, "usage flush")
	_ = m.Flush(ctx)
}

// Close writes everything counted so far, retrying until it succeeds or
// ctx ends (then the error says how much is unwritten). Usage added after
// Close returns is kept in memory until the next Flush.
func (m *meter) Close(ctx context.Context) error {
	for {
		err := m.Flush(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("flushing usage: %d entries unwritten: %w", m.pendingLen(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Usage returns user's usage this month and today, after writing out what
// this process counted.
func (m *meter) Usage(ctx context.Context, user string) (UsageReport, error) {
	_ = m.Flush(ctx) // best effort; the store's figures are what count
	return m.sink.read(ctx, user, periodOf(m.cfg.Now()))
}
