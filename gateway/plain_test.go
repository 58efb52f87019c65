package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestParsePlain(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		want       error
	}{
		{"get", "GET http://a.example/x?y=1 HTTP/1.1\r\nHost: a.example\r\nProxy-Authorization: Basic eDp5\r\n\r\n", nil},
		{"head, no space after colon", "HEAD http://a.example:8080/ HTTP/1.1\r\nHost:a.example:8080\r\n\r\n", nil},
		{"pipelined", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\nGET http://b/ HTTP/1.1\r\n", nil},
		{"incomplete line", "GET http://a/ HTTP/1.1\r\nHost: a\r", errMore},
		{"no end yet", "GET http://a/ HTTP/1.1\r\nHost: a\r\n", errMore},
		{"nothing yet", "", errMore},
		{"post", "POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", errNotPlain},
		{"get with a body", "GET http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", errNotPlain},
		{"chunked get", "GET http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", errNotPlain},
		{"upgrade", "GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", errNotPlain},
		{"expect", "GET http://a/ HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n", errNotPlain},
		{"http/1.0", "GET http://a/ HTTP/1.0\r\nHost: a\r\n\r\n", errNotPlain},
		{"origin form", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", errNotPlain},
		{"https target", "GET https://a/ HTTP/1.1\r\nHost: a\r\n\r\n", errNotPlain},
		{"no host", "GET http://a/ HTTP/1.1\r\n\r\n", errNotPlain},
		{"two hosts", "GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", errNotPlain},
		{"bare LF", "GET http://a/ HTTP/1.1\nHost: a\n\n", errNotPlain},
		{"folded", "GET http://a/ HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", errNotPlain},
		{"space in name", "GET http://a/ HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n", errNotPlain},
		{"no colon", "GET http://a/ HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", errNotPlain},
		{"lower-case method", "get http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", errNotPlain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, n, err := parsePlain([]byte(tc.head))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if err != nil {
				return
			}
			want := samePlain(t, []byte(tc.head), req, n)
			if want.Header.Get("Host") != "" || req.Host == "" {
				t.Errorf("Host %q in header, %q in request", want.Header.Get("Host"), req.Host)
			}
		})
	}
}

func TestParsePlainClose(t *testing.T) {
	req, _, err := parsePlain([]byte("GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n"))
	if err != nil || !req.Close {
		t.Fatalf("Connection: close not seen: %v", err)
	}
}

// Whatever parsePlain takes, net/http's server would have read the same way;
// servePlain hands everything else to it.
func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{
		"GET http://a.example/x?y=1 HTTP/1.1\r\nHost: a.example\r\nProxy-Authorization: Basic eDp5\r\n\r\n",
		"HEAD http://[::1]:8080/%41 HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nHost: b\r\nx-lower: v \t\r\n\r\nrest",
		"GET http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, head []byte) {
		req, n, err := parsePlain(head)
		if err != nil {
			if !errors.Is(err, errMore) && !errors.Is(err, errNotPlain) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		samePlain(t, head, req, n)
	})
}

// samePlain checks req (n bytes of head) against net/http's reading of head,
// and returns the latter.
func samePlain(t *testing.T, head []byte, req *http.Request, n int) *http.Request {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(head))
	want, err := http.ReadRequest(br)
	if err != nil {
		t.Fatalf("parsePlain took %q, net/http refuses it: %v", head, err)
	}
	if used := len(head) - br.Buffered(); used != n {
		t.Fatalf("head of %d bytes, net/http read %d", n, used)
	}
	if want.ContentLength != 0 || want.Body != http.NoBody {
		t.Fatalf("net/http sees a body (%d bytes)", want.ContentLength)
	}
	if req.Method != want.Method || req.URL.String() != want.URL.String() || req.Host != want.Host ||
		req.RequestURI != want.RequestURI || req.Close != want.Close || req.ProtoMajor != 1 || req.ProtoMinor != 1 {
		t.Fatalf("got %s %s host %q uri %q close %v; net/http %s %s host %q uri %q close %v", req.Method, req.URL, req.Host,
			req.RequestURI, req.Close, want.Method, want.URL, want.Host, want.RequestURI, want.Close)
	}
	// net/http adds Cache-Control to a Pragma: no-cache request; a proxy
	// passes the customer's headers on as they are.
	if _, ok := req.Header["Cache-Control"]; !ok && strings.EqualFold(want.Header.Get("Pragma"), "no-cache") {
		want.Header.Del("Cache-Control")
	}
	if !maps.EqualFunc(req.Header, want.Header, slices.Equal) {
		t.Fatalf("header %v, net/http %v", req.Header, want.Header)
	}
	return want
}
