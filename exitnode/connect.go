package exitnode

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/farmgate/farmgate/internal/splice"
)

// connectEstablished is the reply to a CONNECT whose destination was dialled.
const connectEstablished = "HTTP/1.1 200 Connection established\r\n\r\n"

// serveConnect dials the CONNECT target from the chosen egress IP, then takes
// the connection over and relays it. Errors before the takeover are answered
// through w, so nothing is written twice.
func (s *Server) serveConnect(w http.ResponseWriter, r *http.Request) {
	rt, err := s.pickRoute(r)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	target := r.URL.Host
	if target == "" {
		target = r.Host
	}
	if _, _, err := parseTarget(target); err != nil {
		s.refuse(w, r, err)
		return
	}
	if err := s.acquire(); err != nil {
		s.refuse(w, r, err)
		return
	}
	relayed := false // then the relay releases the slot
	defer func() {
		if !relayed {
			s.release()
		}
	}()
	dest, err := rt.dialer.DialContext(r.Context(), "tcp", target)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = dest.Close()
		s.refuse(w, r, fmt.Errorf("connect %s: connection cannot be taken over: %w", target, errBadTarget))
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		_ = dest.Close()
		s.log.Warn("connect: hijack failed", "host", target, "err", err)
		return
	}
	relayed = true
	s.relay(client, brw.Reader, dest, s.release)
}

// tunnel is one live CONNECT relay.
type tunnel struct {
	client, dest net.Conn
	closeOnce    sync.Once
	ended        atomic.Int32 // copy directions that have returned
	done         func()       // called once both have: releases the slot

	mu      sync.Mutex  // guards timer and stopped
	timer   *time.Timer // idle check
	stopped bool
}

// close closes both sides; safe to call more than once and concurrently.
func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		_ = t.client.Close()
		_ = t.dest.Close()
	})
}

// relay answers 200, writes to dest the bytes buffered read past the CONNECT
// headers, then copies both ways until both directions end (each end
// half-closes the other side) or one fails (both are closed). buffered is
// not used after relay returns.
//
// It returns at once: the copies run in two new goroutines, so an idle
// tunnel holds two small stacks and not the one that read the head and
// dialled. Whichever copy ends last closes both connections, untracks the
// tunnel and calls done, which releases its slot; so does relay itself if
// the tunnel fails before the copies start.
func (s *Server) relay(client net.Conn, buffered *bufio.Reader, dest net.Conn, done func()) {
	t := &tunnel{client: client, dest: dest, done: done}
	if !s.track(t) {
		t.close()
		done()
		return
	}
	_ = client.SetDeadline(time.Time{})
	_, err := io.WriteString(client, connectEstablished)
	if err == nil && buffered.Buffered() > 0 {
		early, _ := buffered.Peek(buffered.Buffered())
		_, err = dest.Write(early)
	}
	if err != nil {
		s.end(t)
		return
	}
	s.watchIdle(t)
	// Both copies run between the raw connections: with *net.TCPConn on
	// both sides splice.Copy moves the bytes in the kernel.
	go s.pipe(t, dest, client)
	go s.pipe(t, client, dest)
}

// pipe copies src to dst, then half-closes dst so the peer sees EOF; an
// error closes both sides. The second direction to end ends the tunnel.
func (s *Server) pipe(t *tunnel, dst, src net.Conn) {
	_, err := splice.Copy(dst, src)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			err = cw.CloseWrite()
		} else {
			err = dst.Close()
		}
	}
	if err != nil {
		t.close()
	}
	if t.ended.Add(1) == 2 {
		s.end(t)
	}
}

// end closes t for good and gives its slot back.
func (s *Server) end(t *tunnel) {
	t.stopIdle()
	t.close()
	s.untrack(t)
	t.done()
}

// track registers t so a Shutdown cut can close it; false if cutting already.
func (s *Server) track(t *tunnel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cutting {
		return false
	}
	s.tunnels[t] = struct{}{}
	return true
}

func (s *Server) untrack(t *tunnel) {
	s.mu.Lock()
	delete(s.tunnels, t)
	s.mu.Unlock()
}

// watchIdle arms the idle check of t: every IdleTimeout at most, it asks the
// kernel how long ago either socket last moved data and closes the tunnel if
// that is IdleTimeout or more. (The relay splices, so no user-space code sees
// the bytes to time them.) If the kernel cannot tell, the tunnel is treated
// as active.
func (s *Server) watchIdle(t *tunnel) {
	idle := s.cfg.IdleTimeout
	t.mu.Lock()
	defer t.mu.Unlock()
	t.timer = time.AfterFunc(idle, func() {
		next := idle
		a, okA := idleFor(t.client)
		b, okB := idleFor(t.dest)
		if okA && okB {
			since := min(a, b)
			if since >= idle {
				s.log.Info("tunnel idle, closing", "idle", since.String(),
					"client", t.client.RemoteAddr().String(), "dest", t.dest.RemoteAddr().String())
				t.close()
				return
			}
			next = max(idle-since, 10*time.Millisecond)
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.stopped {
			t.timer.Reset(next)
		}
	})
}

func (t *tunnel) stopIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
	}
}
