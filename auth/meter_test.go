package auth

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/farmgate/farmgate/internal/testkit/logtest"
	"github.com/farmgate/farmgate/internal/testkit/redistest"
)

func redisMeter(t testing.TB, rdb redis.UniversalClient, prefix string, cfg MeterConfig) *RedisMeter {
	t.Helper()
	cfg.Prefix = prefix
	if cfg.Logger == nil {
		cfg.Logger = quietLogger
	}
	m, err := NewRedisMeter(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestUsageSharedAcrossGateways(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	ctx := t.Context()
	clock := newFakeClock()
	a := redisMeter(t, rdb, prefix, MeterConfig{Now: clock.Now})
	b := redisMeter(t, rdb, prefix, MeterConfig{Now: clock.Now})
	alice := &Customer{User: "alice", QuotaBytes: 1000}
	a.Add("alice", "resi", 100, 200)
	b.Add("alice", "dc", 10, 20)
	b.Add("alice", "resi", 1, 2)
	if a.OverQuota(alice) || b.OverQuota(alice) {
		t.Fatal("over quota at 333 of 1000 bytes")
	}
	if err := a.Close(ctx); err != nil { // SIGTERM: everything written
		t.Fatal(err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := a.Usage(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	want := UsageReport{User: "alice", Month: "2026-01", Day: "2026-01-01", ThisMonth: Traffic{111, 222}, Today: Traffic{111, 222},
		MonthByPool: map[string]Traffic{"resi": {101, 202}, "dc": {10, 20}}, TodayByPool: map[string]Traffic{"resi": {101, 202}, "dc": {10, 20}}}
	if !sameReport(rep, want) {
		t.Fatalf("Usage = %+v\nwant    %+v", rep, want)
	}
	// Gateway b sees a's usage after its next flush: 333 + 700 crosses 1000.
	a.Add("alice", "resi", 700, 0)
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if !b.OverQuota(alice) {
		t.Error("gateway b: not over quota at 1033 of 1000 bytes")
	}
	// A new month starts from zero.
	clock.Advance(31 * 24 * time.Hour)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if b.OverQuota(alice) {
		t.Error("over quota in a new month")
	}
	rep, _ = b.Usage(ctx, "alice")
	if rep.Month != "2026-02" || rep.ThisMonth.Total() != 0 {
		t.Errorf("new month usage = %+v", rep)
	}
}

func sameReport(a, b UsageReport) bool {
	if a.User != b.User || a.Month != b.Month || a.Day != b.Day || a.ThisMonth != b.ThisMonth || a.Today != b.Today ||
		len(a.MonthByPool) != len(b.MonthByPool) || len(a.TodayByPool) != len(b.TodayByPool) {
		return false
	}
	for k, v := range a.MonthByPool {
		if b.MonthByPool[k] != v {
			return false
		}
	}
	for k, v := range a.TodayByPool {
		if b.TodayByPool[k] != v {
			return false
		}
	}
	return true
}

func TestUsageSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	proc := redistest.Start(t)
	logs := &logtest.Recorder{}
	m := redisMeter(t, proc.Client(), "fg:", MeterConfig{FlushInterval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond, Logger: slogOf(logs)})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var sent int64
	add := func(n int) {
		for range n {
			m.Add("alice", "resi", 3, 7)
			sent += 10
			time.Sleep(time.Millisecond)
		}
	}
	add(100)
	proc.Stop() // mid-run: the Redis data is lost with it (no persistence)
	add(200)
	proc.Restart()
	// The restarted Redis is empty; the usage written before is gone with
	// it, but everything held during the outage must arrive. Count what
	// arrives after the restart against what was added after the stop.
	add(100)
	cancel()
	<-done
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Usage(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.ThisMonth.Total(); got < 300*10 || got > sent {
		t.Errorf("after the restart Redis holds %d bytes, want at least the %d added since the stop (and at most %d)", got, 300*10, sent)
	}
	if n := logs.Count("redis unreachable; serving from memory"); n != 1 {
		t.Errorf("outage logged %d times, want 1", n)
	}
}

func TestMeterAddDoesNotAllocate(t *testing.T) {
	m, err := NewMemoryMeter(MeterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m.Add("alice", "resi", 1, 1)
	c := &Customer{User: "alice", QuotaBytes: 1 << 40}
	m.OverQuota(c)
	if n := testing.AllocsPerRun(1000, func() { m.Add("alice", "resi", 10, 20) }); n != 0 {
		t.Errorf("Add allocates %v times for a known key, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { m.OverQuota(c) }); n != 0 {
		t.Errorf("OverQuota allocates %v times, want 0", n)
	}
}

func TestMemoryMeterMonthRollover(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	clock.Advance(30*24*time.Hour + 23*time.Hour + 59*time.Minute) // 2026-01-31 23:59 UTC
	m, err := NewMemoryMeter(MeterConfig{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c := &Customer{User: "alice", QuotaBytes: 100}
	m.Add("alice", "resi", 60, 60)
	if !m.OverQuota(c) {
		t.Fatal("not over quota at 120 of 100")
	}
	m.Flush(t.Context())
	clock.Advance(2 * time.Minute) // 2026-02-01 00:01
	m.Flush(t.Context())
	if m.OverQuota(c) {
		t.Error("over quota in a new month")
	}
	m.Add("alice", "dc", 5, 0)
	rep, _ := m.Usage(t.Context(), "alice")
	if rep.Month != "2026-02" || rep.Day != "2026-02-01" || rep.ThisMonth != (Traffic{5, 0}) || rep.MonthByPool["dc"] != (Traffic{5, 0}) {
		t.Errorf("Usage in February = %+v", rep)
	}
}

func BenchmarkMeterAdd(b *testing.B) {
	m, _ := NewMemoryMeter(MeterConfig{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Add("alice", "resi", 1500, 15000)
		}
	})
}

func TestUsageSurvivesRedisPause(t *testing.T) {
	t.Parallel()
	proc := redistest.Start(t)
	m := redisMeter(t, proc.Client(), "fg:", MeterConfig{FlushInterval: 50 * time.Millisecond, Timeout: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	var sent int64
	add := func(n int) {
		for range n {
			m.Add("alice", "resi", 3, 7)
			sent += 10
			time.Sleep(time.Millisecond)
		}
	}
	add(100)
	proc.Signal(syscall.SIGSTOP) // Redis stops answering, keeps its data
	add(300)
	proc.Signal(syscall.SIGCONT)
	add(100)
	cancel()
	<-done
	if err := m.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	rep, err := m.Usage(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	// Flushes that timed out while Redis was stopped still sat in its
	// socket and ran when it resumed; their retries must not count again.
	if got := rep.ThisMonth.Total(); got != sent {
		t.Errorf("Redis holds %d bytes, want %d (%+d)", got, sent, got-sent)
	}
}

// lostReply is a sink whose first writes reach the store but report
// failure, as when the reply is lost in a timeout.
type lostReply struct {
	usageSink
	lose int
}

func (s *lostReply) write(ctx context.Context, b *batch, watch []string, month string) (map[string]int64, error) {
	totals, err := s.usageSink.write(ctx, b, watch, month)
	if err == nil && s.lose > 0 {
		s.lose--
		return nil, errors.New("reply lost")
	}
	return totals, err
}

func TestFlushRetryAfterLostReplyCountsOnce(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	m := redisMeter(t, rdb, prefix, MeterConfig{})
	m.sink = &lostReply{usageSink: m.sink, lose: 2}
	m.Add("alice", "resi", 100, 1000)
	if err := m.Flush(t.Context()); err == nil {
		t.Fatal("first flush: want the lost reply's error")
	}
	// More usage while the first batch is in doubt: it waits for its own
	// batch and is counted once too.
	m.Add("alice", "dc", 5, 50)
	m.Add("bob", "resi", 7, 70)
	if err := m.Flush(t.Context()); err == nil {
		t.Fatal("second flush: want the lost reply's error")
	}
	for i := range 2 {
		if err := m.Flush(t.Context()); err != nil {
			t.Fatalf("flush %d: %v", i+3, err)
		}
	}
	if n := m.pendingLen(); n != 0 {
		t.Fatalf("%d entries pending after the flushes succeeded", n)
	}
	for user, want := range map[string]int64{"alice": 1155, "bob": 77} {
		rep, err := m.Usage(t.Context(), user)
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.ThisMonth.Total(); got != want {
			t.Errorf("%s: Redis holds %d bytes, want %d", user, got, want)
		}
		if got := rep.Today.Total(); got != want {
			t.Errorf("%s: today %d bytes, want %d", user, got, want)
		}
	}
}

func TestFlushAfterScriptFlush(t *testing.T) {
	t.Parallel()
	proc := redistest.Start(t)
	rdb := proc.Client()
	m := redisMeter(t, rdb, "fg:", MeterConfig{})
	m.Add("alice", "resi", 1, 2)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	// A Redis restarted or told to forget its scripts.
	if err := rdb.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	m.Add("alice", "resi", 10, 20)
	if err := m.Flush(t.Context()); err != nil {
		t.Fatalf("flush after SCRIPT FLUSH: %v", err)
	}
	rep, err := m.Usage(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := rep.ThisMonth; got != (Traffic{Up: 11, Down: 22}) {
		t.Errorf("month %+v, want 11 up 22 down", got)
	}
}

// The store applies a batch number once per user: the same batch sent
// again (its reply lost) or an older one arriving late counts nothing.
func TestRedisBatchAppliedOnce(t *testing.T) {
	t.Parallel()
	rdb, prefix := redistest.Shared(t)
	m := redisMeter(t, rdb, prefix, MeterConfig{})
	p := periodOf(time.Now())
	batchOf := func(seq uint64, user string, down int64) *batch {
		return &batch{seq: seq, entries: map[pendKey]*pendVal{{user, "resi", p}: {t: Traffic{Down: down}}}}
	}
	for _, step := range []struct {
		name string
		b    *batch
	}{
		{"batch 1", batchOf(1, "alice", 100)},
		{"batch 1 again", batchOf(1, "alice", 100)},
		{"batch 2", batchOf(2, "alice", 10)},
		{"batch 1 late", batchOf(1, "alice", 100)},
		{"batch 2 again", batchOf(2, "alice", 10)},
		{"batch 2 of another user", batchOf(2, "bob", 7)},
	} {
		if _, err := m.sink.write(t.Context(), step.b, nil, p.month); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
	}
	for user, want := range map[string]int64{"alice": 110, "bob": 7} {
		rep, err := m.sink.read(t.Context(), user, p)
		if err != nil {
			t.Fatal(err)
		}
		if rep.ThisMonth.Down != want || rep.Today.Down != want || rep.MonthByPool["resi"].Down != want {
			t.Errorf("%s: month %+v, today %+v, resi %+v; want %d down each", user, rep.ThisMonth, rep.Today, rep.MonthByPool["resi"], want)
		}
	}
}
