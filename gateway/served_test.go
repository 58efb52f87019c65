package gateway

import (
	"bytes"
	"net"
	"testing"

	"github.com/farmgate/farmgate/internal/dataplane/handoff"
)

type writeRecorder struct {
	net.Conn
	buf bytes.Buffer
}

func (w *writeRecorder) Write(p []byte) (int, error) { return w.buf.Write(p) }

func TestServedConnMarksOnlyTheServersOwnRefusals(t *testing.T) {
	const canned = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
	for _, tc := range []struct{ in, want string }{
		{canned, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n" +
			"X-Farmgate-Error: bad_request\r\n\r\n400 Bad Request"},
		{"HTTP/1.1 400 Bad Request: missing required Host header" + canned[len("HTTP/1.1 400 Bad Request"):] + ": missing required Host header",
			"HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n" +
				"X-Farmgate-Error: bad_request\r\n\r\n400 Bad Request: missing required Host header"},
		// Answers through a handler, and bytes that are not a head at all.
		{"HTTP/1.1 200 OK\r\nX-Farmgate-Exit: e\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n", ""},
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nDate: x\r\n\r\n", ""},
		{"HTTP/1.1 100 Continue\r\n\r\n", ""},
		{"HTTP/1.1 ", ""},
		{"body bytes", ""},
	} {
		rec := &writeRecorder{}
		c := newServedConn(&handoff.Conn{Conn: rec})
		n, err := c.Write([]byte(tc.in))
		want := tc.want
		if want == "" {
			want = tc.in
		}
		if err != nil || n != len(tc.in) || rec.buf.String() != want {
			t.Errorf("Write(%q) = %d, %v; wrote %q, want %q", tc.in, n, err, rec.buf.String(), want)
		}
	}
}
