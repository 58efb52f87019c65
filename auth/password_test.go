package auth

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashPassword(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("HashPassword = %q, want an argon2id PHC string with OWASP parameters", h)
	}
	h2, err := HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if h == h2 {
		t.Error("two hashes of the same password are equal; want a random salt each time")
	}
	for _, tc := range []struct {
		password string
		want     bool
	}{
		{"s3cret", true},
		{"s3cret ", false},
		{"S3cret", false},
		{"", false},
	} {
		got, err := VerifyPassword(h, tc.password)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("VerifyPassword(argon2id of s3cret, %q) = %v, want %v", tc.password, got, tc.want)
		}
	}
}

func TestVerifyPasswordBcrypt(t *testing.T) {
	t.Parallel()
	b, err := bcrypt.GenerateFromPassword([]byte("hunter2"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		h := prefix + string(b[4:])
		for _, tc := range []struct {
			password string
			want     bool
		}{{"hunter2", true}, {"hunter3", false}, {"", false}} {
			got, err := VerifyPassword(h, tc.password)
			if err != nil {
				t.Fatalf("VerifyPassword(%s..., %q): %v", prefix, tc.password, err)
			}
			if got != tc.want {
				t.Errorf("VerifyPassword(%s... of hunter2, %q) = %v, want %v", prefix, tc.password, got, tc.want)
			}
		}
	}
}

func TestVerifyPasswordRejectsBadHashes(t *testing.T) {
	t.Parallel()
	const salt, key = "c2FsdHNhbHRzYWx0c2FsdA", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5"
	tests := []struct {
		name, hash, mention string
	}{
		{"empty", "", "not an argon2id"},
		{"plain text", "hunter2", "not an argon2id"},
		{"argon2i", "$argon2i$v=19$m=19456,t=2,p=1$" + salt + "$" + key, "only argon2id"},
		{"old version", "$argon2id$v=16$m=19456,t=2,p=1$" + salt + "$" + key, "version"},
		{"missing parts", "$argon2id$v=19$m=19456,t=2,p=1$" + salt, "want $argon2id$"},
		{"missing parameter", "$argon2id$v=19$m=19456,t=2$" + salt + "$" + key, "all of m, t and p"},
		{"unknown parameter", "$argon2id$v=19$m=19456,t=2,p=1,x=1$" + salt + "$" + key, "unknown parameter"},
		{"duplicate parameter", "$argon2id$v=19$m=19456,m=19456,t=2$" + salt + "$" + key, "m:"},
		{"absurd memory", "$argon2id$v=19$m=99999999,t=2,p=1$" + salt + "$" + key, "m:"},
		{"absurd time", "$argon2id$v=19$m=19456,t=100000,p=1$" + salt + "$" + key, "t:"},
		{"zero lanes", "$argon2id$v=19$m=19456,t=2,p=0$" + salt + "$" + key, "p:"},
		{"bad salt", "$argon2id$v=19$m=19456,t=2,p=1$!!!$" + key, "salt"},
		{"short key", "$argon2id$v=19$m=19456,t=2,p=1$" + salt + "$a2V5", "key"},
		{"truncated bcrypt", "$2b$10$abc", "bcrypt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ok, err := VerifyPassword(tc.hash, "x")
			if err == nil || ok {
				t.Fatalf("VerifyPassword(%q) = %v, %v; want an error", tc.hash, ok, err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error = %q, want it to mention %q", err, tc.mention)
			}
		})
	}
}
