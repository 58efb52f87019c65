package gateway

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/farmgate/farmgate/auth"
	"github.com/farmgate/farmgate/internal/dataplane/splice"
	"github.com/farmgate/farmgate/internal/dataplane/tcpinfo"
	"github.com/farmgate/farmgate/upstream"
)

// tunnel is one live CONNECT tunnel: the customer's connection, the exit's,
// and what the watcher (watch.go) needs to meter it and time it out.
type tunnel struct {
	conns    [2]net.Conn // [0] customer, [1] exit; direction d reads conns[d]
	customer *auth.Customer
	pool     string
	exit     string
	started  time.Time

	bytes      [2]atomic.Int64 // copied per direction, set when it ends
	finished   atomic.Int32    // directions that ended
	halfClosed atomic.Bool     // one side finished sending: FinTimeout applies
	closed     atomic.Bool
	done       func(up, down int64)

	// A tunnel is listed from before the customer hears 200, so that a
	// revocation in between is not missed; it is live once its relay runs.
	// CutRevoked sets revoked and shuts a live tunnel; the relay's start
	// sets live and shuts a revoked one: whichever comes second sees the
	// other's flag.
	live    atomic.Bool
	revoked atomic.Bool

	// recheck is when (UnixNano) the customer's account is to be asked
	// about again: its expiry, or a minute after a renewal; 0 for never.
	recheck atomic.Int64

	// On a link (conns[1] is an *upstream.LinkTunnel) each direction that ended with
	// an end frame sets its clean flag; with both, the link goes back to
	// its pool instead of being closed.
	clean [2]atomic.Bool

	mu       sync.Mutex   // guards the metering state below
	base     tcpinfo.Info // the customer connection when the relay started
	reported [2]int64     // bytes already handed to the meter, per direction
	final    bool         // done ran: the watcher reports nothing more
}

// relay copies bytes both ways between the customer and the exit (t is
// listed in g.tunnels already) until both directions are done, then closes both and calls t.done with the bytes
// copied customer→exit (up) and exit→customer (down).
//
// It returns at once: the copy runs in two new goroutines, so an idle tunnel
// holds two small stacks and not the one that parsed, authenticated and
// dialled (which goes back to the runtime for the next customer).
//
// Both conns should be the raw *net.TCPConn: splice.Copy between them moves
// the bytes in the kernel, through a pipe only while bytes are in flight. No
// user-space code sees the bytes; the watcher reads them, and the idle time,
// from the kernel (TCP_INFO).
func (g *Gateway) relay(t *tunnel) {
	t.base, _ = tcpinfo.Read(socketOf(t.conns[0]))
	t.recheck.Store(expiresAt(t.customer))
	go g.pipe(t, 0)
	go g.pipe(t, 1)
	t.live.Store(true)
	if t.revoked.Load() {
		t.shut()
	}
}

// revoke ends t for a customer no longer allowed (see the live field).
func (t *tunnel) revoke() {
	t.revoked.Store(true)
	if t.live.Load() {
		t.shut()
	}
}

// pipe copies from conns[d] to conns[1-d]; the last direction to end closes
// up.
func (g *Gateway) pipe(t *tunnel, d int) {
	src, dst := t.conns[d], t.conns[1-d]
	var n int64
	var err error
	halfClose := true // of dst, after a clean end
	if lt, ok := t.conns[1].(*upstream.LinkTunnel); ok {
		var clean bool
		if d == 0 {
			n, clean, err = lt.Send(src)
			halfClose = false // the end frame, or Send's own half-close after raw
		} else {
			n, clean, err = lt.Receive(dst)
		}
		if err != nil {
			err = fmt.Errorf("tunnel through exit %s: %w", t.exit, err)
		}
		t.clean[d].Store(clean)
	} else {
		n, err = splice.Copy(dst, src)
	}
	t.bytes[d].Store(n)
	switch {
	case err != nil:
		// An error on either side ends the tunnel.
		t.shut()
	case t.finished.Load() == 0:
		// Clean EOF while the other side may still deliver: pass the
		// half-close on. A peer that cannot half-close ends the tunnel.
		if halfClose {
			cw, ok := dst.(interface{ CloseWrite() error })
			if !ok || cw.CloseWrite() != nil {
				t.shut()
			}
		}
		t.halfClosed.Store(true)
	}
	if t.finished.Add(1) < 2 {
		return
	}
	if lt, ok := t.conns[1].(*upstream.LinkTunnel); ok && t.clean[0].Load() && t.clean[1].Load() && !t.closed.Swap(true) {
		// Both directions ended with end frames: the exit waits for the
		// next CONNECT on this link.
		t.conns[0].Close()
		lt.Keep()
	} else {
		t.shut()
	}
	g.tunnels.Delete(t)
	t.done(t.bytes[0].Load(), t.bytes[1].Load())
}

// shut closes both sides so every blocked copy returns.
func (t *tunnel) shut() {
	if t.closed.Swap(true) {
		return
	}
	t.conns[0].Close()
	t.conns[1].Close()
}
