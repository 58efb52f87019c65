//go:build linux

package main

import (
	"net"
	"sync"
	"time"
)

// delayRelay stands for a WAN between the load or the gateway and one exit:
// it forwards TCP connections to target and holds every byte for delay in
// each direction, with no loss and no bandwidth limit. A client's first
// bytes also wait out the handshake's round trip, which the relay's own
// accept skipped: a chunk read from the client at t leaves at
// max(t, accepted+2*delay) + delay. (netem would do this in the kernel, but
// not every machine has it.)
type delayRelay struct {
	ln     net.Listener
	target string
	delay  time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex // guards conns
	conns  map[net.Conn]struct{}
}

func startDelayRelay(target string, delay time.Duration) (*delayRelay, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &delayRelay{ln: ln, target: target, delay: delay, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *delayRelay) addr() string { return r.ln.Addr().String() }

// close stops the relay, cuts its connections and waits for its goroutines.
func (r *delayRelay) close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.conns = nil
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *delayRelay) serve() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		accepted := time.Now()
		up, err := net.Dial("tcp4", r.target)
		if err != nil {
			c.Close()
			continue
		}
		if !r.track(c, up) {
			c.Close()
			up.Close()
			return
		}
		var left sync.WaitGroup
		left.Add(2)
		r.wg.Add(5) // two pipes, their two readers, the closer
		go r.pipe(up, c, accepted.Add(2*r.delay), &left)
		go r.pipe(c, up, accepted, &left)
		go func() {
			defer r.wg.Done()
			left.Wait()
			c.Close()
			up.Close()
			r.mu.Lock()
			delete(r.conns, c)
			delete(r.conns, up)
			r.mu.Unlock()
		}()
	}
}

// track registers both connections so close can cut them; false once the
// relay is closed.
func (r *delayRelay) track(cs ...net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.conns == nil {
		return false
	}
	for _, c := range cs {
		r.conns[c] = struct{}{}
	}
	return true
}

// chunk is bytes read, or the end of the stream (nil), due at a time.
type chunk struct {
	b   []byte
	due time.Time
}

// pipe copies src to dst, each chunk delay after it was read (and not
// before notBefore + delay). At src's EOF it half-closes dst, delayed the
// same; on an error it closes both. It marks left done when it is through.
func (r *delayRelay) pipe(dst, src net.Conn, notBefore time.Time, left *sync.WaitGroup) {
	defer r.wg.Done()
	defer left.Done()
	q := make(chan chunk, 4096)
	go func() {
		defer r.wg.Done()
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			t := time.Now()
			if t.Before(notBefore) {
				t = notBefore
			}
			if n > 0 {
				q <- chunk{b: buf[:n], due: t.Add(r.delay)}
			}
			if err != nil {
				q <- chunk{due: t.Add(r.delay)}
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.due))
		if c.b == nil {
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			continue
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			dst.Close()
		}
	}
}
