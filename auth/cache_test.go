package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"strings"
	"testing"
)

func TestMacerIsHMACSHA256(t *testing.T) {
	t.Parallel()
	key := []byte("0123456789abcdef0123456789abcdef")
	m := newTestMacer(key)
	tests := []struct {
		name           string
		user, password string
	}{
		{"short", "alice", "pw"},
		{"empty", "", ""},
		{"at the stack limit", strings.Repeat("u", MaxNameLen), strings.Repeat("p", maxPasswordLen)},
		{"past the stack limit", strings.Repeat("u", MaxNameLen), strings.Repeat("p", maxPasswordLen+1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := hmac.New(sha256.New, key)
			h.Write([]byte{'u'})
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(tc.user))))
			h.Write([]byte(tc.user + tc.password))
			if got := m.pair(tc.user, tc.password); !hmac.Equal(got[:], h.Sum(nil)) {
				t.Errorf("pair(%d-byte user, %d-byte password) is not HMAC-SHA256", len(tc.user), len(tc.password))
			}
		})
	}
	if m.pair("ab", "c") == m.pair("a", "bc") {
		t.Error("pair(ab, c) == pair(a, bc): the user/password boundary is lost")
	}
	if m.pair("", "x") == m.secret("x") {
		t.Error("pair and secret share a domain")
	}
}
