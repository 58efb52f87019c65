package demo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// POST /echo sends back the whole body, also one longer than the 512 bytes
// net/http's server reads before the answer starts.
func TestEchoSendsTheWholeBodyBack(t *testing.T) {
	t.Parallel()
	o, err := StartOrigin("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer o.Shutdown(context.Background())
	c, err := net.Dial("tcp", o.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Head and body in one write: the server has the body before the
	// handler writes, and it used to discard what the handler had not read
	// once the answer's head went out.
	body := make([]byte, 30<<10)
	rand.Read(body)
	req := fmt.Appendf(nil, "POST /echo HTTP/1.1\r\nHost: origin\r\nContent-Length: %d\r\n\r\n", len(body))
	go c.Write(append(req, body...))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("echo: %d of %d bytes back (%v)", len(got), len(body), err)
	}
}
