package gateway

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/upstream"
)

func TestParseProxyAuth(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name, header, user, pass string
		ok                       bool
	}{
		{"basic", "Basic " + b64("alice:secret"), "alice", "secret", true},
		{"scheme is case-insensitive", "basic " + b64("alice:secret"), "alice", "secret", true},
		{"colon in the password", "Basic " + b64("alice:a:b"), "alice", "a:b", true},
		{"empty password", "Basic " + b64("alice:"), "alice", "", true},
		{"targeting in the user", "Basic " + b64("alice-country-us-session-x:pw"), "alice-country-us-session-x", "pw", true},
		{"no colon", "Basic " + b64("alice"), "", "", false},
		{"not base64", "Basic !!!", "", "", false},
		{"bearer", "Bearer abc", "", "", false},
		{"empty", "", "", "", false},
		{"long credentials", "Basic " + b64(strings.Repeat("u", 300)+":"+strings.Repeat("p", 300)), strings.Repeat("u", 300), strings.Repeat("p", 300), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, p, ok := parseProxyAuth(tc.header)
			if ok != tc.ok || u != tc.user || p != tc.pass {
				t.Errorf("parseProxyAuth(%q) = %q, %q, %v; want %q, %q, %v", tc.header, u, p, ok, tc.user, tc.pass, tc.ok)
			}
		})
	}
}

func FuzzParseProxyAuth(f *testing.F) {
	f.Add("alice", "secret")
	f.Add("a-zone-x", "p:q")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, user, pass string) {
		if strings.Contains(user, ":") {
			return
		}
		h := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
		u, p, ok := parseProxyAuth(h)
		if !ok || u != user || p != pass {
			t.Fatalf("round trip of %q:%q gave %q:%q %v", user, pass, u, p, ok)
		}
		parseProxyAuth(user) // arbitrary input must not panic
		parseProxyAuth("Basic " + pass)
	})
}

func TestConnectTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		uri string
		ok  bool
	}{
		{"example.com:443", true},
		{"127.0.0.1:8080", true},
		{"[::1]:443", true},
		{"example.com", false},
		{"example.com:0", false},
		{"example.com:65536", false},
		{"example.com:https", false},
		{":443", false},
		{"user@example.com:443", false},
		{"/path", false},
		{"http://example.com:80", false},
		{"127.0.0.1:+80", false},
		{strings.Repeat("a.", 127) + "a:443", false},
		{"a..example:443", false},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			_, err := connectTarget(tc.uri)
			if (err == nil) != tc.ok {
				t.Errorf("connectTarget(%q) = %v, want ok=%v", tc.uri, err, tc.ok)
			}
			if err != nil && !errors.Is(err, errBadTarget) {
				t.Errorf("error %v does not wrap errBadTarget", err)
			}
		})
	}
}

func FuzzConnectTarget(f *testing.F) {
	f.Add("example.com:443")
	f.Add("[::1]:80")
	f.Fuzz(func(t *testing.T, uri string) {
		target, err := connectTarget(uri)
		if err == nil && strings.ContainsAny(target, " \r\n@/") {
			t.Fatalf("accepted %q", target)
		}
	})
}

func TestErrorTableCoversEveryReason(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err    error
		status int
		reason string
	}{
		{errNoCredentials, 407, "auth_required"},
		{&upstream.ExitError{Status: 403, Reason: "destination_forbidden"}, 403, "destination_forbidden"},
		{&upstream.ExitError{Status: 502, Reason: "destination_unreachable"}, 502, "destination_unreachable"},
		{&upstream.ExitError{Status: 504, Reason: "destination_timeout"}, 504, "destination_timeout"},
		{&upstream.ExitError{Status: 503, Reason: "exit_busy"}, 502, "exit_failed"},
		{&upstream.ExitError{Status: 407, Reason: "unauthorized"}, 502, "exit_failed"},
		{errPoolForbidden, 403, "pool_forbidden"},
		{errBadTarget, 400, "bad_request"},
		{&upstream.ExitError{Status: 400, Reason: "bad_request"}, 400, "bad_request"},
		{&customerError{errors.New("invalid byte in chunk length")}, 400, "bad_request"},
		{&customerError{io.ErrUnexpectedEOF}, 400, "bad_request"},
		{errors.New("read response: connection reset by peer"), 502, "exit_failed"},
	}
	for _, tc := range tests {
		r := replyFor(tc.err)
		if r.status != tc.status || r.reason != tc.reason {
			t.Errorf("replyFor(%v) = %d %s, want %d %s", tc.err, r.status, r.reason, tc.status, tc.reason)
		}
	}
}

// Whose doing a failed attempt through an exit was decides whether the exit
// is marked and another tried.
func TestFaultOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want fault
	}{
		{"exit unreachable", fmt.Errorf("tunnel through exit eu-1: %w", upstream.ErrExitDial), exitFault},
		{"unknown", errors.New("read CONNECT reply: EOF"), exitFault},
		{"exit busy", &upstream.ExitError{Status: 503, Reason: "exit_busy"}, exitFault},
		{"exit has not the egress IP", &upstream.ExitError{Status: 400, Reason: "bad_egress"}, exitFault},
		{"destination", &upstream.ExitError{Status: 502, Reason: "destination_unreachable"}, destinationFault},
		{"exit says malformed", fmt.Errorf("tunnel through exit eu-1: %w", &upstream.ExitError{Status: 400, Reason: "bad_request"}), customerFault},
		{"malformed body", fmt.Errorf("write: %w", &customerError{errors.New("invalid byte in chunk length")}), customerFault},
		{"customer stopped sending", &customerError{io.ErrUnexpectedEOF}, customerFault},
		{"malformed target", fmt.Errorf("%w: x", errBadTarget), customerFault},
	}
	for _, tc := range tests {
		if got := faultOf(tc.err); got != tc.want {
			t.Errorf("%s: faultOf(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}

func TestReadConnectHeadWrapsErrBadTarget(t *testing.T) {
	t.Parallel()
	head := "CONNECT a.example:443 HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n\r\n"
	target, auth, n, err := readConnectHead(bufio.NewReaderSize(strings.NewReader(head), 4096))
	if err != nil || target != "a.example:443" || auth != "Basic eA==" || n != len(head) {
		t.Fatalf("got %q %q %d %v", target, auth, n, err)
	}
	_, _, _, err = readConnectHead(bufio.NewReaderSize(strings.NewReader("CONNECT a.example HTTP/1.1\r\n\r\n"), 4096))
	if !errors.Is(err, errBadTarget) {
		t.Fatalf("error %v does not wrap errBadTarget", err)
	}
}

func FuzzSOCKSRequest(f *testing.F) {
	f.Add([]byte{5, 1, 0, 3, 11, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', 1, 187})
	f.Add([]byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReader(bytes.NewReader(b))
		target, n, _, err := socksRequest(br)
		if err == nil {
			if _, err := connectTarget(target); err != nil {
				t.Fatalf("accepted %q that connectTarget refuses", target)
			}
			if n != len(b)-br.Buffered() {
				t.Fatalf("request of %d bytes, read %d", n, len(b)-br.Buffered())
			}
		}
	})
}
