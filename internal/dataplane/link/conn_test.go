package link

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
)

// A Conn speaks to an exit's Send and Receive: what it writes arrives
// unframed, what the exit sends reads back, and once both ended the link
// is clean for the next CONNECT.
func TestConnAgainstSendAndReceive(t *testing.T) {
	t.Parallel()
	gw, ex := tcptest.Pair(t)
	dst, origin := tcptest.Pair(t)
	c := NewConn(gw, nil)
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	recvd := make(chan string, 1)
	go func() {
		Receive(dst, ex, nil)
		dst.CloseWrite()
	}()
	go func() {
		b, _ := io.ReadAll(origin)
		recvd <- string(b)
		origin.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		origin.CloseWrite()
	}()
	go Send(ex, dst)
	// The origin answers once our direction ended.
	if p := c.Poll(); p != nil {
		t.Fatalf("Poll on a quiet tunnel = %v", p)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if got := <-recvd; got != "GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("origin got %q", got)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "HTTP/1.1 200 OK\r\n\r\n" {
		t.Fatalf("read %q %v", got, err)
	}
	if l := c.End(time.Now().Add(time.Second)); l != gw {
		t.Fatalf("End = %v, want the link back", l)
	}
}

// Poll tells an idle tunnel the origin closed (the exit's end frame) from
// one still open, and End then gives the link back at once.
func TestConnPollSeesTheEnd(t *testing.T) {
	t.Parallel()
	gw, ex := tcptest.Pair(t)
	c := NewConn(gw, append(binary.BigEndian.AppendUint32(nil, 6), "answer"...))
	b := make([]byte, 16)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "answer" {
		t.Fatalf("read %q %v", b[:n], err)
	}
	if err := c.Poll(); err != nil {
		t.Fatalf("Poll before the end = %v", err)
	}
	ex.Write(binary.BigEndian.AppendUint32(nil, endWord))
	if err := pollUntilSome(t, c); !errors.Is(err, io.EOF) {
		t.Fatalf("Poll after the end frame = %v, want EOF", err)
	}
	if l := c.End(time.Now().Add(-time.Second)); l != gw {
		t.Fatal("End after the exit's end did not give the link back")
	}
	var end [hdrLen]byte
	ex.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadFull(ex, end[:]); err != nil || end != [hdrLen]byte{} {
		t.Fatalf("the exit read %v %v, want our end frame", end, err)
	}
}

// Bytes on an idle tunnel, or a raw switch, leave the link unusable.
func TestConnEndAfterRawClosesTheLink(t *testing.T) {
	t.Parallel()
	gw, ex := tcptest.Pair(t)
	c := NewConn(gw, binary.BigEndian.AppendUint32(nil, rawWord))
	go func() {
		ex.Write([]byte("raw body"))
		ex.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "raw body" {
		t.Fatalf("read %q %v", got, err)
	}
	if l := c.End(time.Now().Add(time.Second)); l != nil {
		t.Fatal("End gave back a link that went raw")
	}
	gw2, ex2 := tcptest.Pair(t)
	c2 := NewConn(gw2, nil)
	ex2.Write(frames("unasked")[:11])
	if err := pollUntilSome(t, c2); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Poll with unasked bytes = %v, want an error", err)
	}
}

// connDecode reads everything a Conn decodes from data, which arrives in
// pieces of the given sizes behind early.
func connDecode(t *testing.T, early, data, cuts []byte) (out []byte, ended, raw bool, err error) {
	gw, ex := tcptest.Pair(t)
	go func() {
		for i := 0; len(data) > 0; i++ {
			k := len(data)
			if len(cuts) > 0 {
				k = min(int(cuts[i%len(cuts)])+1, len(data))
			}
			ex.Write(data[:k])
			data = data[k:]
			time.Sleep(time.Microsecond)
		}
		ex.CloseWrite()
	}()
	c := NewConn(gw, early)
	gw.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, err = io.ReadAll(c)
	return out, c.ended, c.raw, err
}

// FuzzConnRead checks that a Conn reads the tunnel bytes Receive would
// write, however the link cuts the frames.
func FuzzConnRead(f *testing.F) {
	f.Add(frames("hello", "world"), []byte{0}, uint8(3))
	f.Add(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 1, 'x'}, rawWord), []byte{1}, uint8(0))
	f.Add(append(frames("a"), 'x'), []byte{2, 5}, uint8(9))
	f.Fuzz(func(t *testing.T, data, cuts []byte, split uint8) {
		if len(data) > 1<<16 {
			return
		}
		k := min(int(split), len(data))
		want, done, rest, raw, werr := decode(data, nil)
		got, ended, graw, gerr := connDecode(t, bytes.Clone(data[:k]), data[k:], cuts)
		switch {
		case werr != nil:
			if gerr == nil {
				t.Fatalf("Conn read %q without error; Receive: %v", got, werr)
			}
		case done && len(rest) > 0:
			// Bytes behind the end are an error when they come with it;
			// arriving later they wait for the next use of the link.
			if gerr == nil && (!bytes.Equal(got, want) || !ended) {
				t.Fatalf("Conn read %q (ended %v), Receive wrote %q and left %q", got, ended, want, rest)
			}
		case !done && !raw:
			if !errors.Is(gerr, io.ErrUnexpectedEOF) {
				t.Fatalf("Conn read %q, %v on a link closed inside the tunnel", got, gerr)
			}
		default:
			if gerr != nil || !bytes.Equal(got, want) || ended != done || graw != raw {
				t.Fatalf("Conn read %q %v (ended %v raw %v), Receive wrote %q (done %v raw %v)", got, gerr, ended, graw, want, done, raw)
			}
		}
	})
}

// After the exit switched to raw, Poll still tells a quiet tunnel from one
// the origin closed, and consumes nothing.
func TestConnPollAfterRaw(t *testing.T) {
	t.Parallel()
	gw, ex := tcptest.Pair(t)
	c := NewConn(gw, binary.BigEndian.AppendUint32(append(binary.BigEndian.AppendUint32(nil, 2), "ab"...), rawWord))
	ex.Write([]byte("cd"))
	got := make([]byte, 0, 4)
	for len(got) < 4 {
		b := make([]byte, 4)
		n, err := c.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b[:n]...)
	}
	if string(got) != "abcd" {
		t.Fatalf("read %q", got)
	}
	if err := c.Poll(); err != nil {
		t.Fatalf("Poll on a quiet raw tunnel = %v", err)
	}
	ex.Write([]byte("e"))
	if err := pollUntilSome(t, c); err == nil {
		t.Fatal("Poll with unasked bytes = nil")
	}
	b := make([]byte, 4)
	if n, _ := c.Read(b); string(b[:n]) != "e" {
		t.Fatalf("Poll consumed the byte: read %q", b[:n])
	}
	ex.CloseWrite()
	if err := pollUntilSome(t, c); err == nil || errors.Is(err, io.EOF) {
		t.Fatalf("Poll after the origin closed a raw tunnel = %v, want an error that is not EOF", err)
	}
}

// pollUntilSome polls c until Poll reports something, for at most 5 s, and
// returns what it reported: bytes written on loopback arrive soon, not at
// once.
func pollUntilSome(t *testing.T, c *Conn) error {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := c.Poll(); err != nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}
