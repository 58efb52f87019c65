package gateway

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// relay copies bytes both ways between a (the customer) and b (the exit)
// until both directions are done or the tunnel idles out, then closes both
// and calls done with the bytes copied a→b (up) and b→a (down).
//
// It returns at once: the copy runs in two new goroutines, so an idle tunnel
// holds two small stacks and not the one that parsed, authenticated and
// dialled (which goes back to the runtime for the next customer).
//
// Both conns should be the raw *net.TCPConn: io.Copy between them splices in
// the kernel. Idle time is checked by one timer per tunnel that, when it
// fires, interrupts both blocked reads with a deadline to collect the bytes
// moved since the last check; no per-read bookkeeping slows the copy.
func relay(a, b net.Conn, idle, fin time.Duration, done func(up, down int64)) {
	t := &tunnel{conns: [2]net.Conn{a, b}, idle: idle, fin: fin, live: 2, done: done}
	t.timer = time.AfterFunc(idle, t.check)
	go t.run(0)
	go t.run(1)
}

// run is one direction's goroutine; the last one to finish closes up.
func (t *tunnel) run(d int) {
	n := t.pipe(d)
	t.bytes[d].Store(n)
	if t.finished.Add(1) < 2 {
		return
	}
	t.timer.Stop()
	t.shut()
	t.done(t.bytes[0].Load(), t.bytes[1].Load())
}

type tunnel struct {
	conns [2]net.Conn // [0] customer, [1] exit; direction d reads conns[d]
	idle  time.Duration
	fin   time.Duration
	timer *time.Timer

	moved    atomic.Int64 // bytes reported since the last check
	closed   atomic.Bool
	bytes    [2]atomic.Int64 // per direction, once it ended
	finished atomic.Int32    // directions that ended
	done     func(up, down int64)

	mu       sync.Mutex // guards live, pending, checking
	live     int        // directions still copying
	pending  int        // directions yet to answer the current check
	checking bool
}

// pipe copies from conns[d] to conns[1-d].
func (t *tunnel) pipe(d int) int64 {
	src, dst := t.conns[d], t.conns[1-d]
	var total int64
	for {
		n, err := io.Copy(dst, src)
		total += n
		t.moved.Add(n)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && !t.closed.Load() {
			// A check interrupted us: report and carry on.
			src.SetReadDeadline(time.Time{})
			t.answer(false)
			continue
		}
		if err == nil {
			if t.otherDone() {
				// Both sides said all they had to say: closing is enough.
				t.answer(true)
				return total
			}
			// Clean EOF: pass the half-close on; the other direction may
			// still have bytes to deliver, within FinTimeout of silence.
			if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
				t.answer(true)
				return total
			}
		}
		// An error, or a peer that cannot half-close: the tunnel is over.
		t.shut()
		t.answer(true)
		return total
	}
}

// otherDone reports whether the other direction already ended.
func (t *tunnel) otherDone() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live < 2
}

// check runs on the timer: interrupt every live direction's read so it
// reports the bytes it moved.
func (t *tunnel) check() {
	t.mu.Lock()
	if t.closed.Load() || t.live == 0 {
		t.mu.Unlock()
		return
	}
	t.checking = true
	t.pending = t.live
	t.mu.Unlock()
	past := time.Unix(1, 0)
	for _, c := range t.conns {
		c.SetReadDeadline(past)
	}
}

// answer is called by a direction after a check interrupted it, or when it
// ends (done); the last one to answer a check decides.
func (t *tunnel) answer(done bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if done {
		t.live--
		if t.live > 0 && !t.checking {
			t.timer.Reset(t.fin)
		}
	}
	if !t.checking {
		return
	}
	t.pending--
	if t.pending > 0 {
		return
	}
	t.checking = false
	if t.live == 0 {
		return
	}
	if t.moved.Swap(0) == 0 {
		t.shut()
		return
	}
	d := t.idle
	if t.live < 2 {
		d = t.fin
	}
	t.timer.Reset(d)
}

// shut closes both sides so every blocked copy returns.
func (t *tunnel) shut() {
	if t.closed.Swap(true) {
		return
	}
	t.conns[0].Close()
	t.conns[1].Close()
}
