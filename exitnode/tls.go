package exitnode

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"syscall"

	"github.com/farmgate/farmgate/internal/dataplane/readiness"
)

// This file is what changes when the exit's listener is a TLS one (a
// crypto/tls listener over the socket, as `farmgate exit --tls-cert ...`
// makes it): every connection Serve accepts is then a *tls.Conn. Nothing
// below the TLS layer sees the socket, so the relay copies through user
// space instead of splicing (internal/dataplane/splice falls back to the
// connection's own Read and Write for anything but a *net.TCPConn), and the kernel's clock of the socket still times an idle
// tunnel out (idleFor).

// handshake completes the TLS handshake of a gateway's connection within
// ReadHeaderTimeout (a Shutdown's cut ends it too). It reports whether
// the connection may go on; a refused one is closed.
func (s *Server) handshake(c *tls.Conn) bool {
	ctx, cancel := context.WithTimeout(s.baseCtx, s.cfg.ReadHeaderTimeout)
	defer cancel()
	err := c.HandshakeContext(ctx)
	if err == nil {
		return true
	}
	// A connection closed without a word is a port check (a load
	// balancer's, a health probe's), not a refused gateway.
	level := slog.LevelInfo
	if errors.Is(err, io.EOF) {
		level = slog.LevelDebug
	}
	s.log.Log(ctx, level, "tls handshake refused", "remote", c.RemoteAddr().String(), "err", err)
	c.Close()
	return false
}

// waitHead waits until the next head starts to arrive on an idle link and
// returns what it read of it. A socket is waited on without reading or a
// buffer (readiness.Wait); a TLS link is not a socket, and only
// decrypting its next record tells whether a head is there, so its first
// byte is read.
func waitHead(c net.Conn) ([]byte, error) {
	if _, ok := c.(syscall.Conn); ok {
		return nil, readiness.Wait(c)
	}
	b := make([]byte, 1)
	n, err := c.Read(b)
	if n > 0 {
		return b[:n], nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return nil, err
}
