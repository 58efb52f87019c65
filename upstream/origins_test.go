package upstream

import (
	"bufio"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
)

// answered is a tunnel as the client holds it after an answer was read.
func answered(t *testing.T, c *originClient, key originKey) (*exitConn, io.Reader) {
	local, peer := tcptest.Pair(t)
	ec := &exitConn{Conn: local, br: bufio.NewReader(local), home: originHome{c: c, key: key}}
	return ec, peer
}

// Idle tunnels stay within the gateway-wide budget, and one whose origin
// closed it is not handed out.
func TestOriginPoolBudgetAndClosedTunnels(t *testing.T) {
	t.Parallel()
	var budget atomic.Int64
	budget.Store(maxIdleOrigins - 1)
	c := newOriginClient(nil, nil, time.Second, 8, &budget, newMetrics(nil))
	k1 := originKey{egress: netip.MustParseAddr("127.0.1.1"), target: "a:80"}
	k2 := originKey{egress: netip.MustParseAddr("127.0.1.2"), target: "a:80"}
	ec1, _ := answered(t, c, k1)
	ec2, peer2 := answered(t, c, k2)
	ec1.home.put(ec1)
	ec2.home.put(ec2) // over budget: closed
	if n := budget.Load(); n != maxIdleOrigins {
		t.Fatalf("budget %d, want %d", n, maxIdleOrigins)
	}
	peer2.(interface{ SetReadDeadline(time.Time) error }).SetReadDeadline(time.Now().Add(time.Second))
	if _, err := peer2.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the tunnel over budget: read %v, want EOF", err)
	}
	if _, ok := c.get(k2); ok {
		t.Fatal("got a tunnel for a key never kept")
	}
	got, ok := c.get(k1)
	if !ok || got != ec1 || budget.Load() != maxIdleOrigins-1 {
		t.Fatalf("get = %v %v, budget %d", got, ok, budget.Load())
	}

	// The origin closes a kept tunnel: get notices and closes it.
	ec3, peer3 := answered(t, c, k1)
	ec3.home.put(ec3)
	peer3.(io.Closer).Close()
	time.Sleep(20 * time.Millisecond)
	if got, ok := c.get(k1); ok {
		t.Fatalf("get handed out a tunnel its origin closed: %v", got)
	}
	if budget.Load() != maxIdleOrigins-1 {
		t.Fatalf("budget %d after the closed tunnel went", budget.Load())
	}
}
