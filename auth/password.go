package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// Argon2id parameters of HashPassword: OWASP's first recommendation
// (19 MiB of memory, 2 passes, 1 lane), a 16-byte salt and a 32-byte key.
const (
	argonMemory  = 19456 // KiB
	argonTime    = 2
	argonThreads = 1
	argonSaltLen = 16
	argonKeyLen  = 32
)

// Bounds on the argon2id parameters a stored hash may carry, so a hostile or
// mistyped hash cannot make one verification take minutes or gigabytes.
const (
	maxArgonMemory  = 1 << 20 // KiB (1 GiB)
	maxArgonTime    = 64
	maxArgonThreads = 64
	maxArgonKeyLen  = 128
	maxArgonSaltLen = 64
)

// maxPasswordLen is the longest password Authenticate considers; longer
// ones are refused without hashing.
const maxPasswordLen = 1024

var b64 = base64.RawStdEncoding

// HashPassword hashes password with argon2id and a random salt and returns
// the PHC string, $argon2id$v=19$m=19456,t=2,p=1$SALT$KEY.
func HashPassword(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hashing password: reading salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches hash, an argon2id PHC
// string or a bcrypt hash ($2a$, $2b$, $2y$). A mismatch is (false, nil); an
// error means hash cannot be used at all. The comparison is constant-time.
func VerifyPassword(hash, password string) (bool, error) {
	h, err := parseHash(hash)
	if err != nil {
		return false, err
	}
	return h.verify(password), nil
}

// passwordHash is a parsed stored hash, ready to verify against.
type passwordHash struct {
	bcrypt []byte // the bcrypt hash, or nil for argon2id

	// argon2id
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// parseHash parses an argon2id PHC string or a bcrypt hash. Errors say what
// is wrong without quoting the hash.
func parseHash(s string) (passwordHash, error) {
	switch {
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return passwordHash{}, fmt.Errorf("parsing bcrypt hash: %w", err)
		}
		if len(s) != 60 {
			return passwordHash{}, errors.New("parsing bcrypt hash: want 60 characters")
		}
		return passwordHash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2"):
		return passwordHash{}, errors.New("parsing password hash: only argon2id is accepted, not argon2i or argon2d")
	}
	return passwordHash{}, errors.New("parsing password hash: not an argon2id PHC string ($argon2id$...) nor a bcrypt hash ($2a$, $2b$, $2y$)")
}

func parseArgon2id(s string) (passwordHash, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	parts := strings.Split(s, "$")
	if len(parts) != 6 {
		return passwordHash{}, errors.New("parsing argon2id hash: want $argon2id$v=19$m=M,t=T,p=P$SALT$KEY")
	}
	if parts[2] != "v=19" {
		return passwordHash{}, errors.New("parsing argon2id hash: version: want v=19")
	}
	var h passwordHash
	var seen [3]bool
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return passwordHash{}, fmt.Errorf("parsing argon2id hash: parameter %q: want key=value", clip(kv))
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return passwordHash{}, fmt.Errorf("parsing argon2id hash: parameter %q: not a number", clip(k))
		}
		switch k {
		case "m":
			if seen[0] || n < 8 || n > maxArgonMemory {
				return passwordHash{}, fmt.Errorf("parsing argon2id hash: m: want 8..%d KiB, once", maxArgonMemory)
			}
			h.memory, seen[0] = uint32(n), true
		case "t":
			if seen[1] || n < 1 || n > maxArgonTime {
				return passwordHash{}, fmt.Errorf("parsing argon2id hash: t: want 1..%d, once", maxArgonTime)
			}
			h.time, seen[1] = uint32(n), true
		case "p":
			if seen[2] || n < 1 || n > maxArgonThreads {
				return passwordHash{}, fmt.Errorf("parsing argon2id hash: p: want 1..%d, once", maxArgonThreads)
			}
			h.threads, seen[2] = uint8(n), true
		default:
			return passwordHash{}, fmt.Errorf("parsing argon2id hash: unknown parameter %q", clip(k))
		}
	}
	if !seen[0] || !seen[1] || !seen[2] {
		return passwordHash{}, errors.New("parsing argon2id hash: want all of m, t and p")
	}
	if h.memory < 8*uint32(h.threads) {
		return passwordHash{}, errors.New("parsing argon2id hash: m: want at least 8 KiB per lane (p)")
	}
	var err error
	if h.salt, err = b64.DecodeString(parts[4]); err != nil || len(h.salt) < 8 || len(h.salt) > maxArgonSaltLen {
		return passwordHash{}, fmt.Errorf("parsing argon2id hash: salt: want 8..%d bytes of unpadded base64", maxArgonSaltLen)
	}
	if h.key, err = b64.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > maxArgonKeyLen {
		return passwordHash{}, fmt.Errorf("parsing argon2id hash: key: want 16..%d bytes of unpadded base64", maxArgonKeyLen)
	}
	return h, nil
}

// verify reports whether password matches h, in constant time with respect
// to the password's content.
func (h *passwordHash) verify(password string) bool {
	if h.bcrypt != nil {
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(password)) == nil
	}
	key := argon2.IDKey([]byte(password), h.salt, h.time, h.memory, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(key, h.key) == 1
}
