package link

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
)

type sendResult struct {
	n   int64
	raw bool
	err error
}

type recvResult struct {
	n    int64
	rest []byte
	raw  bool
	err  error
}

// oneWay is client → Send → link → Receive → server, the shape of one
// tunnel direction. It returns the ends the test drives.
func oneWay(t *testing.T, linkA, linkB *net.TCPConn) (client, server *net.TCPConn, sent chan sendResult, got chan recvResult) {
	client, in := tcptest.Pair(t)
	out, server := tcptest.Pair(t)
	sent = make(chan sendResult, 1)
	got = make(chan recvResult, 1)
	go func() {
		n, raw, err := Send(linkA, in)
		sent <- sendResult{n, raw, err}
	}()
	go func() {
		n, rest, raw, err := Receive(out, linkB, nil)
		if err == nil {
			err = out.CloseWrite()
		}
		got <- recvResult{n, rest, raw, err}
	}()
	return client, server, sent, got
}

func TestShortTunnelsReuseTheLink(t *testing.T) {
	t.Parallel()
	linkA, linkB := tcptest.Pair(t)
	for i := range 3 {
		client, server, sent, got := oneWay(t, linkA, linkB)
		msg := bytes.Repeat([]byte{byte('a' + i)}, 100+i)
		client.Write(msg)
		client.CloseWrite()
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		all, err := io.ReadAll(server) // EOF: the end frame became a half-close
		if err != nil || !bytes.Equal(all, msg) {
			t.Fatalf("tunnel %d: read %q, %v; want %q", i, all, err, msg)
		}
		s, r := <-sent, <-got
		if s.err != nil || s.raw || s.n != int64(len(msg)) {
			t.Fatalf("tunnel %d: Send = %+v", i, s)
		}
		if r.err != nil || r.raw || r.n != int64(len(msg)) || len(r.rest) != 0 {
			t.Fatalf("tunnel %d: Receive = %+v", i, r)
		}
	}
}

func TestBulkSwitchesToRawAndSplices(t *testing.T) {
	t.Parallel()
	linkA, linkB := tcptest.Pair(t)
	client, server, sent, got := oneWay(t, linkA, linkB)
	payload := make([]byte, 4<<20+7)
	rand.Read(payload)
	go func() {
		client.Write(payload)
		client.CloseWrite()
	}()
	server.SetReadDeadline(time.Now().Add(10 * time.Second))
	all, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(all, payload) {
		t.Fatalf("read %d bytes, %v; want %d bytes intact", len(all), err, len(payload))
	}
	s, r := <-sent, <-got
	if s.err != nil || !s.raw || s.n != int64(len(payload)) {
		t.Fatalf("Send = %+v, want raw and %d bytes", s, len(payload))
	}
	if r.err != nil || !r.raw || r.n != int64(len(payload)) {
		t.Fatalf("Receive = %+v, want raw and %d bytes", r, len(payload))
	}
}

// frames builds the link bytes of msgs followed by an end frame.
func frames(msgs ...string) []byte {
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return binary.BigEndian.AppendUint32(b, endWord)
}

func TestReceiveReturnsWhatFollowsTheEnd(t *testing.T) {
	t.Parallel()
	next := "CONNECT example.com:443 HTTP/1.1\r\n"
	w2, link2 := tcptest.Pair(t)
	out2, server2 := tcptest.Pair(t)
	all := append(frames("hello ", "world"), next...)
	w2.Write(all[3:])
	n, rest, raw, err := Receive(out2, link2, all[:3])
	if err != nil || raw || n != 11 || string(rest) != next {
		t.Fatalf("Receive = %d, %q, %v, %v; want 11, %q", n, rest, raw, err, next)
	}
	out2.CloseWrite()
	got, _ := io.ReadAll(server2)
	if string(got) != "hello world" {
		t.Fatalf("dst got %q", got)
	}
}

func TestReceiveRejectsOversizedFrame(t *testing.T) {
	t.Parallel()
	w, linkB := tcptest.Pair(t)
	out, _ := tcptest.Pair(t)
	w.Write(binary.BigEndian.AppendUint32(nil, MaxChunk+1))
	_, _, _, err := Receive(out, linkB, nil)
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("Receive = %v, want ErrProtocol", err)
	}
}

func TestReceiveLinkClosedInsideTunnel(t *testing.T) {
	t.Parallel()
	w, linkB := tcptest.Pair(t)
	out, _ := tcptest.Pair(t)
	w.Write(binary.BigEndian.AppendUint32(nil, 10))
	w.Write([]byte("abc"))
	w.Close()
	n, _, _, err := Receive(out, linkB, nil)
	if !errors.Is(err, io.ErrUnexpectedEOF) || n != 3 {
		t.Fatalf("Receive = %d, %v; want 3 bytes and ErrUnexpectedEOF", n, err)
	}
}

// memConn is a net.Conn that collects writes, for the fuzz target.
type memConn struct {
	net.Conn
	buf bytes.Buffer
}

func (m *memConn) Write(p []byte) (int, error) { return m.buf.Write(p) }

// decode runs a receiver over data cut into pieces of the given sizes.
func decode(data []byte, cuts []byte) (out []byte, done bool, rest []byte, raw bool, err error) {
	dst := &memConn{}
	r := receiver{dst: dst}
	for i := 0; len(data) > 0; i++ {
		k := len(data)
		if len(cuts) > 0 {
			k = min(int(cuts[i%len(cuts)])+1, len(data))
		}
		done, rest, err = r.take(data[:k])
		data = data[k:]
		if done || err != nil {
			rest = append(rest, data...)
			break
		}
		if r.raw {
			dst.buf.Write(data)
			break
		}
	}
	return dst.buf.Bytes(), done, rest, r.raw, err
}

// FuzzReceive checks that frames decode the same however the link cuts
// them into reads.
func FuzzReceive(f *testing.F) {
	f.Add(frames("hello", "world"), []byte{0})
	f.Add(append(frames("a"), "CONNECT x:1 HTTP/1.1\r\n"...), []byte{2, 5})
	f.Add(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 1, 'x'}, rawWord), []byte{1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		out1, done1, rest1, raw1, err1 := decode(data, nil)
		out2, done2, rest2, raw2, err2 := decode(data, cuts)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("errors differ: %v / %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if !bytes.Equal(out1, out2) || done1 != done2 || !bytes.Equal(rest1, rest2) || raw1 != raw2 {
			t.Fatalf("decoding depends on the cuts: %q %v %q %v / %q %v %q %v", out1, done1, rest1, raw1, out2, done2, rest2, raw2)
		}
	})
}

// A raw word among the bytes read before Receive starts (behind a reply
// head) switches to raw just as one read from the link does.
func TestReceiveRawInBufferedBytes(t *testing.T) {
	t.Parallel()
	w, linkB := tcptest.Pair(t)
	out, server := tcptest.Pair(t)
	buffered := binary.BigEndian.AppendUint32(nil, 2)
	buffered = append(buffered, "ab"...)
	buffered = binary.BigEndian.AppendUint32(buffered, rawWord)
	buffered = append(buffered, "cd"...)
	go func() {
		w.Write([]byte("\x00\x00\x00\x00 raw bytes, not frames"))
		w.CloseWrite()
	}()
	n, _, raw, err := Receive(out, linkB, buffered)
	out.CloseWrite()
	got, _ := io.ReadAll(server)
	want := "abcd\x00\x00\x00\x00 raw bytes, not frames"
	if err != nil || !raw || string(got) != want || n != int64(len(want)) {
		t.Fatalf("Receive = %d, raw %v, %v; dst got %q, want %q", n, raw, err, got, want)
	}
}

// SendFramed keeps a bulk transfer framed, and the link clean behind it.
func TestSendFramedNeverSwitchesToRaw(t *testing.T) {
	t.Parallel()
	linkA, linkB := tcptest.Pair(t)
	src, feed := tcptest.Pair(t)
	out, server := tcptest.Pair(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 10<<10) // 160 KiB
	go func() {
		feed.Write(msg)
		feed.CloseWrite()
	}()
	sent := make(chan error, 1)
	go func() {
		n, err := SendFramed(linkA, src)
		if err == nil && n != int64(len(msg)) {
			err = fmt.Errorf("sent %d bytes", n)
		}
		sent <- err
	}()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	n, rest, raw, err := Receive(out, linkB, nil)
	out.CloseWrite()
	if err != nil || raw || n != int64(len(msg)) || len(rest) != 0 {
		t.Fatalf("Receive = %d, %q, raw %v, %v", n, rest, raw, err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, msg) {
		t.Fatalf("dst got %d bytes, want %d", len(b), len(msg))
	}
}
