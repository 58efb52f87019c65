package exitnode

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/farmgate/farmgate/internal/handoff"
	"github.com/farmgate/farmgate/internal/wire"
)

// This file is the exit's front door. A gateway opens one connection per
// tunnel and starts it with a CONNECT head: the exit reads that head on the
// raw connection, dials and relays from there, with no HTTP server, request
// object or hijack in between (they cost about a quarter of an exit's CPU
// per tunnel). Every other connection (absolute-form HTTP, the info
// endpoint) goes to the HTTP server with the bytes already read.

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
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("serve exit %s: %w", s.cfg.ID, err)
			}
			// EMFILE and friends: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed, backing off", "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go s.serveConn(c)
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// heads holds the readers of CONNECT heads; a gateway's head is a few
// hundred bytes.
var heads = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}

// serveConn reads the start of a connection: a CONNECT head is served here,
// anything else goes to the HTTP server.
func (s *Server) serveConn(c net.Conn) {
	if !s.trackHead(c) {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
	br := heads.Get().(*bufio.Reader)
	br.Reset(c)
	defer func() {
		if br != nil {
			br.Reset(nil)
			heads.Put(br)
		}
	}()
	start, err := br.Peek(8)
	if err != nil {
		s.untrackHead(c)
		c.Close()
		return
	}
	if string(start) != "CONNECT " {
		s.untrackHead(c)
		c.SetReadDeadline(time.Time{})
		if !s.httpLn.Push(&handoff.Conn{Conn: c, R: br}) {
			c.Close()
		}
		br = nil // the connection owns it now
		return
	}
	dest, err := s.openConnect(c, br)
	s.untrackHead(c)
	if err != nil {
		c.Close()
		return
	}
	// relay is done with br when it returns (the copies run on c): the
	// deferred Put gives it back before the tunnel's lifetime.
	s.relay(c, br, dest, s.release)
}

// openConnect reads a CONNECT head from br, checks the token and the egress
// IP, takes a slot and dials the target. On success the caller owns the
// slot (release) and dest; on error the gateway has been answered.
func (s *Server) openConnect(c net.Conn, br *bufio.Reader) (dest net.Conn, err error) {
	var auth, egress []string
	target, err := wire.ReadConnectHead(br, func(k, v []byte) {
		switch {
		case wire.HeaderIs(k, "Proxy-Authorization"):
			auth = append(auth, string(v))
		case wire.HeaderIs(k, HeaderEgress):
			egress = append(egress, string(v))
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
		return nil, err
	}
	return dest, nil
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
		body = ""
	}
	b := make([]byte, 0, 192)
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(status)...)
	b = append(b, "\r\n"+HeaderError+": "...)
	b = append(b, reason...)
	b = append(b, "\r\nConnection: close\r\n"...)
	if body != "" {
		b = append(b, "Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.SetWriteDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
	c.Write(b)
}

// trackHead registers a connection whose head is being read, so a Shutdown
// cut can close it; false when shutting down already.
func (s *Server) trackHead(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cutting {
		return false
	}
	s.reading[c] = struct{}{}
	return true
}

func (s *Server) untrackHead(c net.Conn) {
	s.mu.Lock()
	delete(s.reading, c)
	s.mu.Unlock()
}
