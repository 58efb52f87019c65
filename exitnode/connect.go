package exitnode

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/link"
	"github.com/farmgate/farmgate/internal/dataplane/splice"
)

// connectEstablished is the reply to a CONNECT whose destination was
// dialled; linkEstablished takes the gateway's offer of a link. They are
// only ever read.
var (
	connectEstablished = []byte("HTTP/1.1 200 Connection established\r\n\r\n")
	linkEstablished    = []byte("HTTP/1.1 200 Connection established\r\n" + link.Header + ": " + link.Version + "\r\n\r\n")
)

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
	s.relay(client, buffered(brw.Reader), dest, linkOffer{}, s.release)
}

// tunnel is one live CONNECT relay.
type tunnel struct {
	client, dest net.Conn
	closeOnce    sync.Once
	closed       atomic.Bool
	ended        atomic.Int32 // copy directions that have returned
	done         func()       // called once both have: releases the slot

	// On a link (framed), each direction that ended with an end frame
	// sets its clean flag; with both set and the tunnel not closed, the
	// link serves the next CONNECT, starting with rest.
	framed bool
	noRaw  bool   // the gateway asked that its answers stay framed
	early  []byte // frames read behind the CONNECT head
	clean  [2]atomic.Bool
	rest   []byte

	mu      sync.Mutex  // guards timer and stopped
	timer   *time.Timer // idle check
	stopped bool
}

// close closes both sides; safe to call more than once and concurrently.
func (t *tunnel) close() {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		_ = t.client.Close()
		_ = t.dest.Close()
	})
}

// relay answers 200, writes to dest the early bytes read past the CONNECT
// head, then copies both ways until both directions end (each end
// half-closes the other side) or one fails (both are closed). On a link
// (framed) the gateway's side is framed (package link) and, once both
// directions ended cleanly, the link waits for the gateway's next CONNECT.
//
// A plain tunnel's copies run in two new goroutines and relay returns nil
// at once: an idle tunnel holds two small stacks and not the one that read
// the head and dialled. A tunnel on a link is returned for the caller to
// run its receive direction, and only the send direction gets a goroutine:
// the link's goroutine serves one tunnel after another. Whichever direction
// ends last closes the tunnel, untracks it and calls done, which releases
// its slot; so does relay itself if the tunnel fails before the copies
// start.
func (s *Server) relay(client net.Conn, early []byte, dest net.Conn, offer linkOffer, done func()) *tunnel {
	framed := offer.framed
	t := &tunnel{client: client, dest: dest, done: done, framed: framed, noRaw: offer.noRaw, early: early}
	if !s.track(t) {
		t.close()
		done()
		return nil
	}
	_ = client.SetDeadline(time.Time{})
	reply := connectEstablished
	if framed {
		reply = linkEstablished
	}
	_, err := client.Write(reply)
	if err == nil && len(early) > 0 && !framed {
		_, err = dest.Write(early)
	}
	if err != nil {
		t.close()
		s.end(t)
		return nil
	}
	s.watchIdle(t)
	if framed {
		go s.send(t)
		return t
	}
	// Both copies run between the raw connections: with *net.TCPConn on
	// both sides splice.Copy moves the bytes in the kernel.
	go s.pipe(t, dest, client)
	go s.pipe(t, client, dest)
	return nil
}

// pipe copies src to dst, then half-closes dst so the peer sees EOF; an
// error closes both sides. The second direction to end ends the tunnel.
func (s *Server) pipe(t *tunnel, dst, src net.Conn) {
	_, err := splice.Copy(dst, src)
	if err == nil {
		err = link.CloseWrite(dst)
	}
	s.ended(t, err)
}

// receive is the gateway-to-destination direction of a tunnel on a link.
// It reports whether the caller goes on with the link, starting with rest.
func (s *Server) receive(t *tunnel) (rest []byte, goOn bool) {
	_, rest, raw, err := link.Receive(t.dest, t.client, t.early)
	if err == nil {
		err = link.CloseWrite(t.dest)
	}
	t.rest = rest
	t.clean[0].Store(err == nil && !raw)
	return t.rest, s.ended(t, err)
}

// send is the destination-to-gateway direction of a tunnel on a link. When
// it ends last and the link goes on, this goroutine serves it.
func (s *Server) send(t *tunnel) {
	var raw bool
	var err error
	if t.noRaw {
		_, err = link.SendFramed(t.client, t.dest)
	} else {
		_, raw, err = link.Send(t.client, t.dest)
	}
	t.clean[1].Store(err == nil && !raw)
	if s.ended(t, err) {
		s.serveLink(t.client, t.rest, true)
	}
}

// ended records that one direction of t returned with err (which closes
// both sides); the second ends the tunnel and reports whether its link
// goes on.
func (s *Server) ended(t *tunnel, err error) (goOn bool) {
	if err != nil {
		t.close()
	}
	if t.ended.Add(1) == 2 {
		return s.end(t)
	}
	return false
}

// end closes t for good and gives its slot back. It reports whether t is
// on a link that ended cleanly: then the caller serves the link's next
// CONNECT.
func (s *Server) end(t *tunnel) (goOn bool) {
	t.stopIdle()
	reuse := t.framed && t.clean[0].Load() && t.clean[1].Load()
	if reuse {
		// closeOnce keeps a late idle check or cut from closing the link.
		t.closeOnce.Do(func() { _ = t.dest.Close() })
		reuse = !t.closed.Load()
	}
	if !reuse {
		t.close()
	}
	s.untrack(t)
	t.done()
	return reuse
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
