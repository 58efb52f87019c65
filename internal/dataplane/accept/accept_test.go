package accept

import (
	"errors"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"
)

// script is a listener whose Accept returns its entries in turn, then
// net.ErrClosed.
type script struct {
	net.Listener
	steps []error // nil: a connection
}

func (s *script) Accept() (net.Conn, error) {
	if len(s.steps) == 0 {
		return nil, net.ErrClosed
	}
	err := s.steps[0]
	s.steps = s.steps[1:]
	if err != nil {
		return nil, err
	}
	a, _ := net.Pipe()
	return a, nil
}

func TestLoop(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	// A transient error backs off and the loop goes on.
	ln := &script{steps: []error{nil, syscall.EMFILE, syscall.EMFILE, nil}}
	handled := 0
	start := time.Now()
	err := Loop(ln, log, func() bool { return false }, func(c net.Conn) bool { c.Close(); handled++; return true })
	if !errors.Is(err, net.ErrClosed) || handled != 2 {
		t.Fatalf("Loop = %v after %d connections; want net.ErrClosed after 2", err, handled)
	}
	if took := time.Since(start); took < 15*time.Millisecond {
		t.Errorf("two EMFILEs took %s, want the 5 + 10 ms backoff", took)
	}
	// Closing: the end is not an error.
	if err := Loop(&script{}, log, func() bool { return true }, nil); err != nil {
		t.Fatalf("Loop while closing = %v, want nil", err)
	}
	// handle can stop the loop.
	ln = &script{steps: []error{nil, nil, nil}}
	handled = 0
	if err := Loop(ln, log, func() bool { return false }, func(c net.Conn) bool { c.Close(); handled++; return false }); err != nil || handled != 1 {
		t.Fatalf("Loop = %v after %d connections; want nil after 1", err, handled)
	}
}
