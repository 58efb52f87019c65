package upstream

import (
	"io"
	"sync"
	"time"
)

// keepIdle is how long an idle connection to an exit, keep-alive or link,
// is kept for the next use. Exits close theirs later (links after
// link.IdleTimeout, keep-alive connections after their idle timeout, 5
// minutes by default), so a kept connection the exit closed is rare, and
// retried on a fresh one.
const keepIdle = 60 * time.Second

// idlePool keeps idle connections to one exit for reuse. The newest goes
// out first, so when there are more than the load needs the oldest age out:
// get, put and sweep close those idle longer than keepIdle.
type idlePool[C io.Closer] struct {
	mu     sync.Mutex
	idle   []idle[C] // oldest first
	max    int
	closed bool // the upstream was dropped: put closes
}

type idle[C io.Closer] struct {
	c     C
	since time.Time
}

// get returns the newest idle connection, if any.
func (p *idlePool[C]) get() (c C, ok bool) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	n := len(p.idle)
	if n == 0 {
		return c, false
	}
	c = p.idle[n-1].c
	p.idle[n-1] = idle[C]{}
	p.idle = p.idle[:n-1]
	return c, true
}

// put keeps c for the next use, or closes it when the pool is full or
// dropped.
func (p *idlePool[C]) put(c C) {
	now := time.Now()
	p.mu.Lock()
	p.expire(now)
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.idle = append(p.idle, idle[C]{c: c, since: now})
	p.mu.Unlock()
}

// sweep closes the connections idle longer than keepIdle.
func (p *idlePool[C]) sweep(now time.Time) {
	p.mu.Lock()
	p.expire(now)
	p.mu.Unlock()
}

// expire closes the connections idle longer than keepIdle. p.mu is held.
func (p *idlePool[C]) expire(now time.Time) {
	n := 0
	for n < len(p.idle) && now.Sub(p.idle[n].since) > keepIdle {
		p.idle[n].c.Close()
		n++
	}
	if n > 0 {
		p.idle = append(p.idle[:0], p.idle[n:]...)
	}
}

// closeIdle closes every idle connection; the pool keeps none from now on.
func (p *idlePool[C]) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, e := range p.idle {
		e.c.Close()
	}
	p.idle = nil
}
