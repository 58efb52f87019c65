package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformed marks a CONNECT head, a target or a request URL that is not
// well formed: the asker's mistake.
var ErrMalformed = errors.New("malformed request")

// MaxHeaderLines bounds a CONNECT head; each line is bounded by the size of
// the reader's buffer.
const MaxHeaderLines = 100

// ReadConnectHead reads a CONNECT request head from br, hands every header
// line to header (the key as sent, the value trimmed; both valid only during
// the call) and returns the authority-form target, checked by CheckTarget,
// and the head's length in bytes (what the gateway bills of it). Both sides
// of a farm read CONNECT heads with it on the raw connection, so the tunnel
// can splice: the gateway from customers, the exit from gateways.
func ReadConnectHead(br *bufio.Reader, header func(key, value []byte)) (target string, n int, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return "", 0, fmt.Errorf("read CONNECT line: %w: %w", ErrMalformed, err)
	}
	n = len(line)
	rest, ok := bytes.CutPrefix(trimEOL(line), []byte("CONNECT "))
	if !ok {
		return "", 0, fmt.Errorf("CONNECT line %q: %w", clip(line), ErrMalformed)
	}
	uri, proto, ok := bytes.Cut(rest, []byte(" "))
	if !ok || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
		return "", 0, fmt.Errorf("CONNECT line %q: %w", clip(line), ErrMalformed)
	}
	target = string(uri)
	if err := CheckTarget(target); err != nil {
		return "", 0, fmt.Errorf("CONNECT line: %w", err)
	}
	for i := 0; ; i++ {
		if i == MaxHeaderLines {
			return "", 0, fmt.Errorf("CONNECT head: more than %d header lines: %w", MaxHeaderLines, ErrMalformed)
		}
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", 0, fmt.Errorf("read CONNECT head: %w: %w", ErrMalformed, err)
		}
		n += len(line)
		line = trimEOL(line)
		if len(line) == 0 {
			return target, n, nil
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return "", 0, fmt.Errorf("CONNECT head: malformed header line: %w", ErrMalformed)
		}
		header(k, bytes.TrimSpace(v))
	}
}

// HeaderIs reports whether the header key read by ReadConnectHead is name,
// ignoring case, without allocating.
func HeaderIs(key []byte, name string) bool {
	return len(key) == len(name) && strings.EqualFold(string(key), name)
}

func trimEOL(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

func clip(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
