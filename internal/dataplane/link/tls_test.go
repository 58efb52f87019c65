package link

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"testing"
	"time"

	"github.com/farmgate/farmgate/internal/testkit/tcptest"
)

// tlsPair is a TLS 1.3 connection over loopback TCP: gw the client, ex the
// server, the handshake done.
func tlsPair(t *testing.T) (gw, ex *tls.Conn) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	a, b := tcptest.Pair(t)
	gw = tls.Client(a, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true})
	ex = tls.Server(b, &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	errc := make(chan error, 1)
	go func() { errc <- ex.Handshake() }()
	if err := gw.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return gw, ex
}

// Over a TLS link, which cannot be peeked, Poll still tells a quiet tunnel
// from one the exit ended, without waiting on a quiet one; End gives the
// link back, and it carries the next tunnel.
func TestConnOverTLS(t *testing.T) {
	t.Parallel()
	gw, ex := tlsPair(t)
	c := NewConn(gw, nil)
	go ex.Write(append(binary.BigEndian.AppendUint32(nil, 6), "answer"...))
	b := make([]byte, 16)
	if n, err := c.Read(b); err != nil || string(b[:n]) != "answer" {
		t.Fatalf("read %q %v", b[:n], err)
	}
	start := time.Now()
	if err := c.Poll(); err != nil {
		t.Fatalf("Poll on a quiet tunnel = %v", err)
	}
	if d := time.Since(start); d > 10*time.Millisecond {
		t.Errorf("Poll on a quiet tunnel took %s", d)
	}
	ex.Write(binary.BigEndian.AppendUint32(nil, endWord))
	if err := pollUntilSome(t, c); !errors.Is(err, io.EOF) {
		t.Fatalf("Poll after the end frame = %v, want EOF", err)
	}
	l := c.End(time.Now().Add(time.Second))
	if l != gw {
		t.Fatalf("End = %v, want the link back", l)
	}
	var end [hdrLen]byte
	ex.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadFull(ex, end[:]); err != nil || end != [hdrLen]byte{} {
		t.Fatalf("the exit read %v %v, want our end frame", end, err)
	}
	// The next tunnel on the same link.
	c2 := NewConn(l, nil)
	go ex.Write(append(binary.BigEndian.AppendUint32(nil, 4), "next"...))
	if n, err := c2.Read(b); err != nil || string(b[:n]) != "next" {
		t.Fatalf("next tunnel: read %q %v", b[:n], err)
	}
	// An exit that closes the link is seen too.
	ex.Close()
	if err := pollUntilSome(t, c2); err == nil {
		t.Fatal("Poll after the exit closed the link = nil")
	}
}

// Send keeps a TLS link framed even when a read fills its buffer: nothing
// would splice it, and the link stays usable after a bulk transfer.
func TestSendStaysFramedOverTLS(t *testing.T) {
	t.Parallel()
	gw, ex := tlsPair(t)
	src, feed := tcptest.Pair(t)
	dst, out := tcptest.Pair(t)
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	go func() {
		feed.Write(payload)
		feed.CloseWrite()
	}()
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(out)
		got <- b
	}()
	recv := make(chan error, 1)
	go func() {
		_, rest, raw, err := Receive(dst, ex, nil)
		if err == nil && (raw || len(rest) > 0) {
			err = errors.New("raw switch or bytes past the end")
		}
		dst.CloseWrite()
		recv <- err
	}()
	n, raw, err := Send(gw, src)
	if err != nil || raw || n != int64(len(payload)) {
		t.Fatalf("Send = %d, raw %v, %v; want %d framed", n, raw, err, len(payload))
	}
	if err := <-recv; err != nil {
		t.Fatal(err)
	}
	if b := <-got; len(b) != len(payload) {
		t.Fatalf("received %d of %d bytes", len(b), len(payload))
	}
}
