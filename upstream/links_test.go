package upstream

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
	"github.com/farmgate/farmgate/pool"

	"github.com/farmgate/farmgate/internal/dataplane/link"
)

// fakeExit answers every CONNECT with reply and reports the link offer it
// saw, then holds the connection until the test ends.
func fakeExit(t *testing.T, reply string) (addr string, offers chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	offers = make(chan string, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				c.Close()
				continue
			}
			offers <- req.Header.Get(link.Header)
			c.Write([]byte(reply))
		}
	}()
	return ln.Addr().String(), offers
}

func testDialer(addr string) *connectDialer {
	return &connectDialer{addr: addr, auth: "Bearer t", forward: &net.Dialer{}, replyTimeout: 5 * time.Second,
		links: newLinkPool(4, newMetrics(nil))}
}

// An exit that does not answer the offer (a version before links) gets a
// plain tunnel, which is never kept.
func TestExitWithoutLinksGetsAPlainTunnel(t *testing.T) {
	t.Parallel()
	addr, offers := fakeExit(t, "HTTP/1.1 200 Connection established\r\n\r\n")
	conn, err := testDialer(addr).DialContext(context.Background(), "tcp", "example.com:443")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := <-offers; got != link.Version {
		t.Fatalf("offer %q, want %q", got, link.Version)
	}
	if _, ok := conn.(*net.TCPConn); !ok {
		t.Fatalf("conn is %T, want a plain *net.TCPConn", conn)
	}
}

func TestExitThatTakesTheLink(t *testing.T) {
	t.Parallel()
	addr, _ := fakeExit(t, "HTTP/1.1 200 Connection established\r\n"+link.Header+": "+link.Version+"\r\n\r\n\x00\x00")
	conn, err := testDialer(addr).DialContext(context.Background(), "tcp", "example.com:443")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	lc, ok := conn.(*LinkTunnel)
	if !ok {
		t.Fatalf("conn is %T, want a *LinkTunnel", conn)
	}
	// Frame bytes behind the reply go to the relay.
	if len(lc.early) != 2 {
		t.Fatalf("early %q, want the 2 bytes behind the reply", lc.early)
	}
}

func TestLinkPool(t *testing.T) {
	t.Parallel()
	if keepIdle >= link.IdleTimeout {
		t.Fatalf("the gateway keeps idle links %s, not less than the exits' %s", keepIdle, link.IdleTimeout)
	}
	p := newLinkPool(2, newMetrics(nil))
	conns := make([]*net.TCPConn, 3)
	for i := range conns {
		conns[i], _ = tcptest.Pair(t)
	}
	p.put(conns[0])
	p.put(conns[1])
	p.put(conns[2]) // over the limit: closed
	if !closed(conns[2]) {
		t.Error("a link put into a full pool was not closed")
	}
	if got, ok := p.get(); !ok || got != conns[1] {
		t.Error("get did not return the newest link")
	}
	// An old link is closed, not handed out.
	p.mu.Lock()
	p.idle[0].since = time.Now().Add(-2 * keepIdle)
	p.mu.Unlock()
	if _, ok := p.get(); ok {
		t.Errorf("get returned a link idle for %s", 2*keepIdle)
	}
	if !closed(conns[0]) {
		t.Error("an expired link was not closed")
	}
	p.closeIdle()
	p.put(conns[1])
	if !closed(conns[1]) {
		t.Error("a link put after closeIdle was not closed")
	}
}

// closed reports whether c was closed on this side.
func closed(c net.Conn) bool {
	_, err := c.Write([]byte("x"))
	return err != nil
}

// The sweep closes idle connections to exits nobody used for a while, so
// an exit that gets no more traffic leaves no descriptors behind.
func TestSweepClosesLongIdleConnections(t *testing.T) {
	t.Parallel()
	now := time.Now()

	p := newLinkPool(4, newMetrics(nil))
	oldLink, _ := tcptest.Pair(t)
	newLink, _ := tcptest.Pair(t)
	p.put(oldLink)
	p.put(newLink)
	p.mu.Lock()
	p.idle[0].since = now.Add(-keepIdle - time.Second)
	p.mu.Unlock()

	c := newExitClient("", nil, 0, 4)
	oldConn, _ := tcptest.Pair(t)
	newConn, _ := tcptest.Pair(t)
	c.idle.put(&exitConn{Conn: oldConn})
	c.idle.put(&exitConn{Conn: newConn})
	c.idle.idle[0].since = now.Add(-keepIdle - time.Second)

	up := &Exit{links: p, client: c}
	up.sweep(now)
	if !closed(oldLink) || closed(newLink) {
		t.Errorf("links: old closed %v (want true), recent closed %v (want false)", closed(oldLink), closed(newLink))
	}
	if !closed(oldConn) || closed(newConn) {
		t.Errorf("keep-alive connections: old closed %v (want true), recent closed %v (want false)", closed(oldConn), closed(newConn))
	}
	if len(p.idle) != 1 || len(c.idle.idle) != 1 {
		t.Errorf("left idle: %d links, %d connections; want 1 and 1", len(p.idle), len(c.idle.idle))
	}
}

// Callers that miss the cache at once (a probe and a customer's first
// tunnel) get one Exit: a second one built alongside would have closed the
// first one's pools under the tunnel using it.
func TestForBuildsOnce(t *testing.T) {
	t.Parallel()
	set := NewSet(DefaultConfig())
	e := &pool.Exit{ID: "x", Addr: "farmgate://127.0.0.1:1"}
	for round := range 20 {
		set.exits.Delete("x")
		built := make(chan *Exit, 8)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				x, err := set.For(e)
				if err != nil {
					t.Error(err)
				}
				built <- x
			})
		}
		wg.Wait()
		close(built)
		first := <-built
		for x := range built {
			if x != first {
				t.Fatalf("round %d: two Exits built for one exit", round)
			}
		}
	}
}
