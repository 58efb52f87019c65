package exitnode

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/farmgate/farmgate/internal/dataplane/accept"
	"github.com/farmgate/farmgate/internal/dataplane/handoff"
	"github.com/farmgate/farmgate/internal/dataplane/link"
	"github.com/farmgate/farmgate/internal/dataplane/wire"
)

// This file is the exit's front door. A gateway opens one connection per
// tunnel and starts it with a CONNECT head: the exit reads that head on the
// raw connection, dials and relays from there, with no HTTP server, request
// object or hijack in between: a tunnel needs none of them, and they were
// a large share of an exit's CPU per tunnel (docs/performance.md). Every
// other connection (absolute-form HTTP, the info endpoint) goes to the
// HTTP server with the bytes already read.

// Serve accepts gateway connections on ln until Shutdown. It returns nil
// after Shutdown and the accept error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	s.startHTTP.Do(func() { go s.srv.Serve(s.httpLn) }) // ends in Shutdown
	err := accept.Loop(ln, s.log, s.isClosing, func(c net.Conn) bool {
		go s.serveConn(c)
		return true
	})
	if err != nil {
		return fmt.Errorf("serve exit %s: %w", s.cfg.ID, err)
	}
	return nil
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// heads holds the readers of CONNECT heads; a gateway's head is a few
// hundred bytes.
var heads = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headSize) }}

const headSize = 4096

// serveConn reads the start of a connection: a CONNECT head is served here,
// anything else goes to the HTTP server.
func (s *Server) serveConn(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok && !s.handshake(tc) {
		return
	}
	s.serveLink(c, nil, false)
}

// serveLink serves the heads on c one after another. A tunnel on a link
// runs its gateway-to-destination direction here; when that ends last and
// cleanly, the link (idle) waits up to link.IdleTimeout for the gateway's
// next CONNECT, rest being what was read of it already. A Shutdown closes
// an idle link at once.
func (s *Server) serveLink(c net.Conn, rest []byte, idle bool) {
	for {
		t := s.serveHead(c, rest, idle)
		if t == nil {
			return
		}
		var goOn bool
		if rest, goOn = s.receive(t); !goOn {
			return
		}
		idle = true
	}
}

// serveHead reads a head on c and serves it. It returns a tunnel on a link
// whose receive direction the caller runs, or nil when it is done with c.
func (s *Server) serveHead(c net.Conn, rest []byte, idle bool) *tunnel {
	if len(rest) > headSize || !s.trackHead(c, idle && len(rest) == 0) {
		c.Close()
		return nil
	}
	if idle && len(rest) == 0 {
		c.SetReadDeadline(time.Now().Add(link.IdleTimeout))
		var err error
		if rest, err = waitHead(c); err != nil || !s.busyHead(c) {
			s.untrackHead(c)
			c.Close()
			return nil
		}
	}
	br := heads.Get().(*bufio.Reader)
	if len(rest) > 0 {
		// All of rest fits the reader's first fill, so nothing stays
		// behind in the MultiReader when the reader is handed on.
		br.Reset(io.MultiReader(bytes.NewReader(rest), c))
	} else {
		br.Reset(c)
	}
	defer func() {
		if br != nil {
			br.Reset(nil)
			heads.Put(br)
		}
	}()
	c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
	start, err := br.Peek(8)
	if err != nil {
		s.untrackHead(c)
		c.Close()
		return nil
	}
	if string(start) != "CONNECT " {
		s.untrackHead(c)
		c.SetReadDeadline(time.Time{})
		if !s.httpLn.Push(handoff.Take(c, br)) {
			c.Close()
		}
		return nil
	}
	dest, offer, err := s.openConnect(c, br)
	s.untrackHead(c)
	if err != nil {
		if offer.framed {
			// A gateway that offers a link may have sent a request
			// behind the CONNECT; closing with it unread would reset
			// the connection, and the reset can destroy the refusal.
			lingerClose(c)
			return nil
		}
		c.Close()
		return nil
	}
	early := buffered(br)
	br.Reset(nil)
	heads.Put(br) // before the tunnel's lifetime
	br = nil
	return s.relay(c, early, dest, offer, s.release)
}

// buffered returns a copy of what br holds, or nil.
func buffered(br *bufio.Reader) []byte {
	if br.Buffered() == 0 {
		return nil
	}
	b, _ := br.Peek(br.Buffered())
	return bytes.Clone(b)
}

// linkOffer is what a gateway's CONNECT asked of the connection: to carry
// the tunnel on a link (framed), and to keep the exit's direction framed
// to the end (noRaw).
type linkOffer struct{ framed, noRaw bool }

// openConnect reads a CONNECT head from br, checks the token and the egress
// IP, takes a slot and dials the target. On success the caller owns the
// slot (release) and dest; on error the gateway has been answered. Either
// way offer says what the gateway asked of the link.
func (s *Server) openConnect(c net.Conn, br *bufio.Reader) (dest net.Conn, offer linkOffer, err error) {
	var auth, egress []string
	target, _, err := wire.ReadConnectHead(br, func(k, v []byte) {
		switch {
		case wire.HeaderIs(k, "Proxy-Authorization"):
			auth = append(auth, string(v))
		case wire.HeaderIs(k, HeaderEgress):
			egress = append(egress, string(v))
		case wire.HeaderIs(k, link.Header):
			offer.framed = string(v) == link.Version
		case wire.HeaderIs(k, link.HeaderFramed):
			offer.noRaw = string(v) == "1"
		}
	})
	if err != nil {
		err = fmt.Errorf("%w: %w", errBadTarget, err)
	} else if !s.tokenOK(auth) {
		err = errUnauthorized
	}
	var rt *route
	if err == nil {
		rt, err = s.route(egress)
	}
	if err == nil {
		_, _, err = parseTarget(target)
	}
	if err == nil {
		if err = s.acquire(); err == nil {
			dest, err = rt.dialer.DialContext(s.baseCtx, "tcp", target)
			if err != nil {
				s.release()
			}
		}
	}
	if err != nil {
		s.refuseRaw(c, target, err)
		return nil, offer, err
	}
	return dest, offer, nil
}

// lingerClose half-closes c after a refusal and reads what the peer still
// sends, until it closes too or a second passes, then closes c.
func lingerClose(c net.Conn) {
	if link.CloseWrite(c) == nil {
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.Copy(io.Discard, io.LimitReader(c, 256<<10))
	}
	c.Close()
}

// refuseRaw answers a CONNECT read by serveConn with the status and
// X-Farmgate-Error reason of err, as refuse does for the HTTP server, and
// logs one line. The caller closes c.
func (s *Server) refuseRaw(c net.Conn, target string, err error) {
	status, reason := reply(err)
	s.log.Info("request refused", "reason", reason, "status", status,
		"method", http.MethodConnect, "host", target, "remote", c.RemoteAddr().String(), "err", err)
	body := reason + "\n"
	if status == http.StatusProxyAuthRequired {
		body = "" // nothing for whoever knocked without the token
	}
	c.SetWriteDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
	c.Write(wire.ErrorReply(status, reason, body))
}

// trackHead registers a connection whose head is being read, so a Shutdown
// cut can close it; false when shutting down already. An idle link is
// registered as such: Shutdown closes it at once.
func (s *Server) trackHead(c net.Conn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cutting || idle && s.closing {
		return false
	}
	if idle {
		s.idleLinks[c] = struct{}{}
	} else {
		s.reading[c] = struct{}{}
	}
	return true
}

// busyHead moves an idle link whose next head has started to arrive among
// the connections reading a head; false if Shutdown closed it meanwhile.
func (s *Server) busyHead(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.idleLinks[c]; !ok {
		return false
	}
	delete(s.idleLinks, c)
	s.reading[c] = struct{}{}
	return true
}

func (s *Server) untrackHead(c net.Conn) {
	s.mu.Lock()
	delete(s.reading, c)
	delete(s.idleLinks, c)
	s.mu.Unlock()
}
