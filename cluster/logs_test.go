package cluster_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cluster"
)

// nodeLog collects a node's log lines for a test to read.
type nodeLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *nodeLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *nodeLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logTo makes a node log at info level into a new nodeLog.
func logTo(buf **nodeLog) func(*cluster.Config) {
	*buf = &nodeLog{}
	b := *buf
	return func(c *cluster.Config) {
		c.Logger = slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
}

// A node of this farm set up with another label or key is named in
// plain words on both sides, not as a bare EOF on the joining side.
func TestMismatchedLabelOrKeyIsExplained(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		differ         func(*cluster.Config)
		seedSays, says []string
	}{
		{"label", func(c *cluster.Config) { c.Label = "farm-b" },
			[]string{"level=WARN", "another cluster label refused", "peer_label=farm-b", "label=farmgate"},
			[]string{"level=WARN", "seed closed the connection without answering: its cluster label probably differs", "label=farm-b"}},
		{"key", func(c *cluster.Config) { c.Keys = [][]byte{key(9)} },
			[]string{"level=WARN", "another encryption key refused"},
			[]string{"no installed keys could decrypt"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var seedLog, joinerLog *nodeLog
			seed := startNode(t, gatewayMeta("gw"), newPool(t), logTo(&seedLog))
			startNode(t, exitMeta(1), nil, joining(seed.Addr()), logTo(&joinerLog), tc.differ)
			waitFor(t, 20*time.Second, "both sides to explain the mismatch", func() bool {
				return containsAll(seedLog.String(), tc.seedSays) && containsAll(joinerLog.String(), tc.says)
			})
			if n := strings.Count(seedLog.String(), tc.seedSays[1]); n != 1 {
				t.Errorf("the seed warned %d times, want once a minute:\n%s", n, seedLog)
			}
		})
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// An exit's log says when a gateway joins, leaves or fails.
func TestExitsLogGatewaysComingAndGoing(t *testing.T) {
	t.Parallel()
	var exitLog *nodeLog
	ex := startNode(t, exitMeta(1), nil, logTo(&exitLog))
	gw := startNode(t, gatewayMeta("gw-left"), newPool(t), joining(ex.Addr()))
	waitFor(t, 20*time.Second, "the exit to log the gateway's arrival", func() bool {
		return strings.Contains(exitLog.String(), `msg="gateway joined the farm" component=cluster node=gw-left id=gw-left`)
	})
	if err := gw.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	gw.Shutdown()
	waitFor(t, 20*time.Second, "the exit to log the gateway's leave", func() bool {
		return strings.Contains(exitLog.String(), `msg="gateway left the farm" component=cluster node=gw-left`)
	})
	gw2 := startNode(t, gatewayMeta("gw-killed"), newPool(t), joining(ex.Addr()))
	waitFor(t, 20*time.Second, "the second gateway's arrival", func() bool {
		return strings.Contains(exitLog.String(), `node=gw-killed`)
	})
	gw2.Shutdown()
	waitFor(t, 30*time.Second, "the exit to log the gateway's failure", func() bool {
		return strings.Contains(exitLog.String(), `msg="gateway unreachable, taken for failed" component=cluster node=gw-killed`)
	})
	for _, line := range strings.Split(strings.TrimSpace(exitLog.String()), "\n") {
		if !strings.Contains(line, "gossip started") && !strings.Contains(line, "msg=\"gateway ") {
			t.Errorf("the exit logged more than gateways coming and going at info level: %s", line)
		}
	}
}

// /api/cluster (Members) lists a member that left for a minute and a
// failed one for ten, then neither.
func TestDepartedMembersAreForgotten(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	gw := startNode(t, gatewayMeta("gw"), newPool(t), func(c *cluster.Config) { cluster.WithClock(c, clock) })
	left := startNode(t, exitMeta(1), nil, joining(gw.Addr()))
	dead := startNode(t, exitMeta(2), nil, joining(gw.Addr()))
	state := func(id string) string {
		for _, m := range gw.Members() {
			if m.ID == id {
				return m.State
			}
		}
		return "absent"
	}
	waitFor(t, 20*time.Second, "both exits alive", func() bool {
		return state(exitMeta(1).ID) == cluster.StateAlive && state(exitMeta(2).ID) == cluster.StateAlive
	})
	if err := left.Leave(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	left.Shutdown()
	dead.Shutdown()
	waitFor(t, 30*time.Second, "one exit left, one dead", func() bool {
		return state(exitMeta(1).ID) == cluster.StateLeft && state(exitMeta(2).ID) == cluster.StateDead
	})
	offset.Store(int64(61 * time.Second))
	if s1, s2 := state(exitMeta(1).ID), state(exitMeta(2).ID); s1 != "absent" || s2 != cluster.StateDead {
		t.Errorf("a minute later: left exit %s, dead exit %s; want absent, dead", s1, s2)
	}
	offset.Store(int64(11 * time.Minute))
	if s2 := state(exitMeta(2).ID); s2 != "absent" {
		t.Errorf("eleven minutes later: dead exit %s, want absent", s2)
	}
	if n := len(gw.Members()); n != 1 {
		t.Errorf("gateway lists %d members, want itself alone", n)
	}
}
