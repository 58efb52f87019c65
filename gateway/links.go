package gateway

import (
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/farmgate/farmgate/internal/link"
)

// linkPool keeps one farmgate exit's idle links (package link): tunnels
// through a kept link skip the TCP handshake and teardown with the exit.
// The newest link goes out first, so the oldest age out when there are
// more than the load needs.
type linkPool struct {
	mu     sync.Mutex
	idle   []idleLink // oldest first
	max    int
	closed bool // the upstream was dropped: put closes

	// What each tunnel went over (farmgate_exit_links_total).
	kept, fresh, stale prometheus.Counter
}

func newLinkPool(max int, m *metrics) *linkPool {
	return &linkPool{
		max:   max,
		kept:  m.links.WithLabelValues("kept"),
		fresh: m.links.WithLabelValues("new"),
		stale: m.links.WithLabelValues("stale"),
	}
}

type idleLink struct {
	c     *net.TCPConn
	since time.Time
}

// get returns the newest idle link, or nil.
func (p *linkPool) get() *net.TCPConn {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	if len(p.idle) == 0 {
		return nil
	}
	l := p.idle[len(p.idle)-1]
	p.idle[len(p.idle)-1] = idleLink{}
	p.idle = p.idle[:len(p.idle)-1]
	return l.c
}

// put keeps c for the next tunnel, or closes it when the pool is full or
// dropped.
func (p *linkPool) put(c *net.TCPConn) {
	now := time.Now()
	p.mu.Lock()
	p.expire(now)
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, idleLink{c: c, since: now})
	p.mu.Unlock()
}

// expire closes links idle longer than link.MaxIdle, which the exit will
// soon close (link.IdleTimeout). p.mu is held.
func (p *linkPool) expire(now time.Time) {
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].since) > link.MaxIdle {
		p.idle[n].c.Close()
		n++
	}
	if n > 0 {
		p.idle = append(p.idle[:0], p.idle[n:]...)
	}
}

// sweep closes the links idle for longer than link.MaxIdle.
func (p *linkPool) sweep(now time.Time) {
	p.mu.Lock()
	p.expire(now)
	p.mu.Unlock()
}

// closeIdle closes every idle link; the pool keeps none from now on.
func (p *linkPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, l := range p.idle {
		l.c.Close()
	}
	p.idle = nil
}

// linkConn is an exit connection that carries its tunnel framed: a new
// link or one from the pool.
type linkConn struct {
	*net.TCPConn
	early []byte    // frames read behind the exit's reply
	home  *linkPool // where the link goes when its tunnel ends cleanly
}
