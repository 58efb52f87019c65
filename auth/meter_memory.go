package auth

import (
	"context"
	"sync"
)

// MemoryMeter is a Meter for a single gateway (the file store, the demo):
// usage lives in this process and is lost when it exits. It keeps the
// current and the previous month and the last 62 days.
type MemoryMeter struct {
	*meter
}

var _ Meter = (*MemoryMeter)(nil)

// NewMemoryMeter returns a meter with cfg; zero fields take their defaults
// (Prefix and Timeout mean nothing here).
func NewMemoryMeter(cfg MeterConfig) (*MemoryMeter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	sink := &memorySink{months: make(map[string]map[string]*poolBook), days: make(map[string]map[string]*poolBook)}
	return &MemoryMeter{newMeter(cfg, sink, cfg.Logger.With("component", "auth", "part", "meter"))}, nil
}

// poolBook is one user's usage in one period: total and per pool.
type poolBook struct {
	total  Traffic
	byPool map[string]Traffic
}

func (b *poolBook) add(pool string, t Traffic) {
	b.total.Up += t.Up
	b.total.Down += t.Down
	pt := b.byPool[pool]
	pt.Up += t.Up
	pt.Down += t.Down
	b.byPool[pool] = pt
}

// memorySink keeps usage in maps: period → user → book.
type memorySink struct {
	mu     sync.Mutex // guards months and days
	months map[string]map[string]*poolBook
	days   map[string]map[string]*poolBook
}

func (s *memorySink) book(m map[string]map[string]*poolBook, period, user string) *poolBook {
	byUser := m[period]
	if byUser == nil {
		byUser = make(map[string]*poolBook)
		m[period] = byUser
	}
	b := byUser[user]
	if b == nil {
		b = &poolBook{byPool: make(map[string]Traffic)}
		byUser[user] = b
	}
	return b
}

// write cannot fail, so no batch is ever in doubt: its number is not kept.
func (s *memorySink) write(_ context.Context, b *batch, watch []string, month string) (map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range b.entries {
		s.book(s.months, k.p.month, k.user).add(k.pool, v.t)
		s.book(s.days, k.p.day, k.user).add(k.pool, v.t)
	}
	// Keep two months and 62 days (period strings sort by time).
	latest := ""
	for mo := range s.months {
		latest = max(latest, mo)
	}
	for mo := range s.months {
		if mo != latest && mo != previousMonth(latest) {
			delete(s.months, mo)
		}
	}
	for len(s.days) > 62 {
		oldest := ""
		for d := range s.days {
			if oldest == "" || d < oldest {
				oldest = d
			}
		}
		delete(s.days, oldest)
	}
	totals := make(map[string]int64, len(watch))
	for _, u := range watch {
		if b := s.months[month][u]; b != nil {
			totals[u] = b.total.Total()
		} else {
			totals[u] = 0
		}
	}
	return totals, nil
}

// previousMonth returns the month before mo (2006-01).
func previousMonth(mo string) string {
	y, m := 0, 0
	for _, c := range mo[:4] {
		y = y*10 + int(c-'0')
	}
	for _, c := range mo[5:7] {
		m = m*10 + int(c-'0')
	}
	m--
	if m == 0 {
		y, m = y-1, 12
	}
	return string([]byte{byte('0' + y/1000), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10), '-', byte('0' + m/10), byte('0' + m%10)})
}

func (s *memorySink) read(_ context.Context, user string, p period) (UsageReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := UsageReport{User: user, Month: p.month, Day: p.day, MonthByPool: map[string]Traffic{}, TodayByPool: map[string]Traffic{}}
	if b := s.months[p.month][user]; b != nil {
		r.ThisMonth = b.total
		for k, v := range b.byPool {
			r.MonthByPool[k] = v
		}
	}
	if b := s.days[p.day][user]; b != nil {
		r.Today = b.total
		for k, v := range b.byPool {
			r.TodayByPool[k] = v
		}
	}
	return r, nil
}
