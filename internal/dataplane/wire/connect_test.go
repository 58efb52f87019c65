package wire

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// readHead reads head and returns the target and the last
// Proxy-Authorization value, and checks the length ReadConnectHead says it
// read.
func readHead(t *testing.T, head string) (target, auth string, err error) {
	br := bufio.NewReaderSize(strings.NewReader(head), 4096)
	target, n, err := ReadConnectHead(br, func(k, v []byte) {
		if HeaderIs(k, "Proxy-Authorization") {
			auth = string(v)
		}
	})
	if err == nil {
		if rest, _ := io.ReadAll(br); n != len(head)-len(rest) {
			t.Fatalf("ReadConnectHead says %d bytes of head, read %d of %q", n, len(head)-len(rest), head)
		}
	}
	return target, auth, err
}

func TestReadConnectHead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, head, target, auth string
		ok                       bool
	}{
		{"minimal", "CONNECT a.example:443 HTTP/1.1\r\n\r\n", "a.example:443", "", true},
		{"early bytes", "CONNECT a.example:443 HTTP/1.1\r\n\r\n\x16\x03\x01", "a.example:443", "", true},
		{"with auth", "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\nproxy-authorization:  Basic eA==\r\n\r\n", "a.example:443", "Basic eA==", true},
		{"bare LF", "CONNECT a.example:443 HTTP/1.0\nProxy-Authorization: Basic eA==\n\n", "a.example:443", "Basic eA==", true},
		{"not CONNECT", "GET / HTTP/1.1\r\n\r\n", "", "", false},
		{"no protocol", "CONNECT a.example:443\r\n\r\n", "", "", false},
		{"HTTP/2", "CONNECT a.example:443 HTTP/2\r\n\r\n", "", "", false},
		{"no port", "CONNECT a.example HTTP/1.1\r\n\r\n", "", "", false},
		{"port with a sign", "CONNECT 127.0.0.1:+80 HTTP/1.1\r\n\r\n", "", "", false},
		{"header without colon", "CONNECT a.example:443 HTTP/1.1\r\nbogus\r\n\r\n", "", "", false},
		{"cut short", "CONNECT a.example:443 HTTP/1.1\r\nHost: x", "", "", false},
		{"too many headers", "CONNECT a.example:443 HTTP/1.1\r\n" + strings.Repeat("X: y\r\n", 101) + "\r\n", "", "", false},
		{"line longer than the buffer", "CONNECT a.example:443 HTTP/1.1\r\nX: " + strings.Repeat("y", 5000) + "\r\n\r\n", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target, auth, err := readHead(t, tc.head)
			if (err == nil) != tc.ok || target != tc.target || auth != tc.auth {
				t.Errorf("got %q %q %v; want %q %q ok=%v", target, auth, err, tc.target, tc.auth, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}

func FuzzReadConnectHead(f *testing.F) {
	f.Add("CONNECT a.example:443 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n\r\n")
	f.Add("CONNECT [::1]:80 HTTP/1.0\n\n")
	f.Fuzz(func(t *testing.T, head string) {
		target, _, err := readHead(t, head)
		if err == nil {
			if err := CheckTarget(target); err != nil {
				t.Fatalf("accepted target %q that CheckTarget refuses", target)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
	})
}
