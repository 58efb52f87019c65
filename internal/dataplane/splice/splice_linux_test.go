//go:build linux

package splice

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
)

// relayPair is client → (in, out) → server: Copy runs from in to out.
func relayPair(t *testing.T) (client, in, out, server *net.TCPConn) {
	client, in = tcptest.Pair(t)
	out, server = tcptest.Pair(t)
	return
}

func TestCopyMovesEverythingThenEOF(t *testing.T) {
	t.Parallel()
	client, in, out, server := relayPair(t)
	payload := make([]byte, 8<<20+12345)
	rand.Read(payload)
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := Copy(out, in)
		done <- result{n, err}
	}()
	go func() {
		client.Write(payload)
		client.CloseWrite()
	}()
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(payload))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("bytes differ")
	}
	r := <-done
	if r.err != nil || r.n != int64(len(payload)) {
		t.Fatalf("Copy = %d, %v; want %d, nil at EOF", r.n, r.err, len(payload))
	}
}

// openFDs counts this process's open descriptors of a kind ("pipe:").
func openFDs(t *testing.T, kind string) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, kind) {
			n++
		}
	}
	return n
}

// TestIdleCopyHoldsNoPipe is why the package exists: a copy waiting for
// bytes holds no pipe, however many there are.
func TestIdleCopyHoldsNoPipe(t *testing.T) {
	// Not parallel: it counts the process's pipes.
	before := openFDs(t, "pipe:")
	const n = 50
	var ends []*net.TCPConn
	for range n {
		client, in, out, server := relayPair(t)
		go Copy(out, in)
		// One message through each, so each copy has used a pipe.
		client.Write([]byte("x"))
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(server, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, client)
	}
	// Pipes idle in the pool are let go over two collections (and closed
	// by their cleanups); a pipe held by a waiting copy would stay.
	for range 3 {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
	}
	if extra := openFDs(t, "pipe:") - before; extra > 2*2 {
		t.Fatalf("%d idle copies hold %d pipe descriptors", n, extra)
	}
	for _, c := range ends {
		c.Close()
	}
}

func TestCopyEndsWhenItsConnectionCloses(t *testing.T) {
	t.Parallel()
	_, in, out, _ := relayPair(t)
	done := make(chan error, 1)
	go func() {
		_, err := Copy(out, in)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	in.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Copy after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Copy still blocked after its source closed")
	}
}

func TestCopyFailsWhenTheDestinationIsGone(t *testing.T) {
	t.Parallel()
	client, in, out, server := relayPair(t)
	server.SetLinger(0)
	server.Close() // RST: writes to out fail
	time.Sleep(20 * time.Millisecond)
	done := make(chan error, 1)
	go func() {
		_, err := Copy(out, in)
		done <- err
	}()
	chunk := bytes.Repeat([]byte("y"), 64<<10)
	go func() {
		for range 64 {
			if _, err := client.Write(chunk); err != nil {
				return
			}
		}
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Copy to a reset connection returned nil")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Copy to a reset connection did not return")
	}
}
