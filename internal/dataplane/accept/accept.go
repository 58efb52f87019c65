// Package accept runs the accept loop the gateway and the exit share: a
// transient accept error (EMFILE and friends) backs off instead of
// spinning, and the error that ends the loop at shutdown is not an error.
package accept

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// Loop accepts connections on ln and hands each to handle until handle
// returns false (Loop returns nil) or Accept fails for good. closing reports
// whether the owner is shutting down: then an Accept error is expected and
// Loop returns nil; otherwise it returns the error.
func Loop(ln net.Listener, log *slog.Logger, closing func() bool, handle func(net.Conn) bool) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if closing() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("accept failed, backing off", "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !handle(c) {
			return nil
		}
	}
}
