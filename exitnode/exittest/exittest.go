// Package exittest runs real exits for the tests of the packages that talk
// to them (upstream, gateway), as net/http/httptest runs servers.
package exittest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/farmgate/farmgate/exitnode"
)

// Start serves an exit of cfg on a loopback port until the test ends, and
// returns its address.
func Start(t testing.TB, cfg exitnode.Config) string {
	t.Helper()
	s, err := exitnode.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-served
	})
	return ln.Addr().String()
}
