package pool_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/pool"
)

// fakeClock is a manual clock for health and expiry tests.
type fakeClock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuf collects a logger's output.
type logBuf struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count returns how many log lines contain every one of subs.
func (l *logBuf) Count(subs ...string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		all := line != ""
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

type fixture struct {
	p     *pool.Pool
	clock *fakeClock
	logs  *logBuf
}

// newPool builds a pool on a fake clock with a fixed seed, logging to a
// buffer, after applying mutate to the default config.
func newPool(t testing.TB, mutate func(*pool.Config), exits ...pool.Exit) fixture {
	t.Helper()
	f := fixture{clock: newFakeClock(), logs: &logBuf{}}
	cfg := pool.DefaultConfig()
	cfg.Now = f.clock.Now
	cfg.Seed = 42
	if mutate != nil {
		mutate(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := pool.New(cfg, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.p = p
	if len(exits) > 0 {
		p.Set(exits)
	}
	return f
}

// mkExits returns n exits e<prefix>-NNNN in pool "resi" with the given DC
// and country, each with two egress IPs.
func mkExits(n int, prefix, dc, country string) []pool.Exit {
	out := make([]pool.Exit, n)
	for i := range n {
		out[i] = pool.Exit{
			ID:      fmt.Sprintf("%s-%04d", prefix, i),
			DC:      dc,
			Pool:    "resi",
			Country: country,
			City:    "city" + country,
			Egress: []netip.Addr{
				netip.AddrFrom4([4]byte{10, byte(len(prefix)), byte(i >> 8), byte(i)}),
				netip.AddrFrom4([4]byte{11, byte(len(prefix)), byte(i >> 8), byte(i)}),
			},
			Addr: "http://" + prefix,
		}
	}
	return out
}

// pickN picks n times with c and counts picks per exit id.
func pickN(t testing.TB, p *pool.Pool, c pool.Criteria, n int) map[string]int {
	t.Helper()
	got := make(map[string]int)
	for range n {
		pk, err := p.Pick(t.Context(), c)
		if err != nil {
			t.Fatalf("Pick(%+v): %v", c, err)
		}
		got[pk.Exit.ID]++
	}
	return got
}

func stateOf(t testing.TB, p *pool.Pool, id string) pool.ExitStatus {
	t.Helper()
	for _, s := range p.Exits() {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("exit %s not in Exits()", id)
	return pool.ExitStatus{}
}
