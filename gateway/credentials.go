package gateway

import (
	"encoding/base64"
	"strings"
)

// parseProxyAuth extracts Basic credentials from a Proxy-Authorization value.
func parseProxyAuth(h string) (user, pass string, ok bool) {
	const prefix = "Basic "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", "", false
	}
	enc := strings.TrimSpace(h[len(prefix):])
	// Credentials are short; decode on the stack-sized buffer when we can.
	var buf [256]byte
	var dec []byte
	if n := base64.StdEncoding.DecodedLen(len(enc)); n <= len(buf) {
		dec = buf[:n]
	} else {
		dec = make([]byte, n)
	}
	n, err := base64.StdEncoding.Decode(dec, []byte(enc))
	if err != nil {
		return "", "", false
	}
	u, p, ok := strings.Cut(string(dec[:n]), ":")
	if !ok {
		return "", "", false
	}
	return u, p, true
}
