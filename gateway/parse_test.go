package gateway

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/farmgate/farmgate/internal/dataplane/wire"
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

// FuzzSOCKSRequest encodes a request as RFC 1928 lays it out and checks
// that socksRequest reads back the command, the address and the port,
// consumes exactly the request (a client may pipeline its first bytes
// behind it), and refuses with the code the RFC names.
func FuzzSOCKSRequest(f *testing.F) {
	f.Add(byte(1), byte(3), []byte("example.com"), uint16(443), []byte("GET"))
	f.Add(byte(1), byte(1), []byte{127, 0, 0, 1}, uint16(80), []byte{})
	f.Add(byte(1), byte(4), make([]byte, 16), uint16(80), []byte{})
	f.Add(byte(2), byte(1), []byte{127, 0, 0, 1}, uint16(80), []byte{})
	f.Add(byte(1), byte(9), []byte{1}, uint16(80), []byte{})
	f.Add(byte(1), byte(3), []byte("a..b"), uint16(80), []byte{})
	f.Fuzz(func(t *testing.T, cmd, atyp byte, addr []byte, port uint16, rest []byte) {
		req := []byte{socksVersion, cmd, 0, atyp}
		var host string
		switch atyp {
		case socksAtypIPv4:
			addr = append(addr, make([]byte, 4)...)[:4]
			host = fmt.Sprintf("%d.%d.%d.%d", addr[0], addr[1], addr[2], addr[3])
			req = append(req, addr...)
		case socksAtypIPv6:
			addr = append(addr, make([]byte, 16)...)[:16]
			host = netip.AddrFrom16([16]byte(addr)).String()
			req = append(req, addr...)
		case socksAtypDomain:
			if len(addr) == 0 || len(addr) > 255 {
				return
			}
			host = string(addr) // an IP literal written as a name is taken too
			req = append(append(req, byte(len(addr))), addr...)
		}
		req = binary.BigEndian.AppendUint16(req, port)
		size := len(req)
		br := bufio.NewReader(bytes.NewReader(append(req, rest...)))
		target, n, rep, err := socksRequest(br)
		switch {
		case cmd != socksCmdConnect:
			if err == nil || rep != socksCmdNotSupported {
				t.Fatalf("command %d: rep %d, err %v; want command not supported", cmd, rep, err)
			}
			return
		case atyp != socksAtypIPv4 && atyp != socksAtypIPv6 && atyp != socksAtypDomain:
			if err == nil || rep != socksAtypNotSupported {
				t.Fatalf("address type %d: rep %d, err %v; want address type not supported", atyp, rep, err)
			}
			return
		}
		want := net.JoinHostPort(host, strconv.Itoa(int(port)))
		if wire.CheckTarget(want) != nil {
			// A target the exit would refuse (port 0, a bad name) is the
			// customer's mistake.
			if err == nil || rep != socksGeneralFailure || !errors.Is(err, errBadTarget) {
				t.Fatalf("target %q: rep %d, err %v; want a bad target, general failure", want, rep, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("well-formed request for %q: %v", want, err)
		}
		if target != want {
			t.Fatalf("target %q, want %q", target, want)
		}
		if n != size || br.Buffered() != len(rest) {
			t.Fatalf("request of %d bytes: n = %d, %d of %d bytes behind it left", size, n, br.Buffered(), len(rest))
		}
	})
}
