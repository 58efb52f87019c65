// Package duplextest checks that a proxy carries an HTTP exchange both ways
// at once: the answer streams back while the request body is still being
// sent. The exit's tests and the end-to-end tests through a gateway run
// the same exchange.
package duplextest

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// EchoOrigin starts an origin that answers at once and then echoes each
// line of the request body, prefixed "echo:", as it arrives. It is closed
// when the test ends.
func EchoOrigin(t testing.TB) *httptest.Server {
	t.Helper()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				_, _ = io.WriteString(w, "echo:"+line)
				_ = rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(origin.Close)
	return origin
}

// Exchange POSTs to url (an EchoOrigin's) through hc, sending each line of
// the body only after it read the echo of the one before, and fails the
// test unless every echo comes back in turn and nothing follows the last.
// A proxy that sends the whole body before it reads the answer, or holds
// the answer's head back, never answers. It returns the answer's header.
func Exchange(t testing.TB, hc *http.Client, url string) http.Header {
	t.Helper()
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequest(http.MethodPost, url, pr)
	if err != nil {
		t.Fatal(err)
	}
	respc := make(chan *http.Response, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := hc.Do(req)
		if err != nil {
			errc <- err
			return
		}
		respc <- resp
	}()
	if _, err := io.WriteString(pw, "one\n"); err != nil {
		t.Fatal(err)
	}
	var resp *http.Response
	select {
	case resp = <-respc:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("no answer while the request body is still open")
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for i, word := range []string{"one", "two", "three"} {
		if i > 0 {
			if _, err := io.WriteString(pw, word+"\n"); err != nil {
				t.Fatal(err)
			}
		}
		line, err := br.ReadString('\n')
		if err != nil || line != "echo:"+word+"\n" {
			t.Fatalf("line %d: %q, %v", i, line, err)
		}
	}
	_ = pw.Close()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("after the body ended: %q, %v", rest, err)
	}
	return resp.Header
}
