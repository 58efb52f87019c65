package auth

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/farmgate/farmgate/internal/suggest"
)

// Limits of the username grammar.
const (
	// MaxNameLen is the longest user name, zone, city, dc or session id.
	MaxNameLen = 64
	// DefaultSessTime is the sticky idle lifetime when the username names a
	// session but no sesstime.
	DefaultSessTime = 10 * time.Minute
	// MaxSessTime is the longest sesstime a customer may ask for (1440 minutes).
	MaxSessTime = 1440 * time.Minute
)

// Target is what a customer asked for in their proxy username.
type Target struct {
	User     string        // the customer's user name
	Zone     string        // pool name, lower-cased; "" = customer's default pool
	Country  string        // ISO 3166 alpha-2, UPPER-cased; "" = any
	City     string        // lower-cased; "" = any
	DC       string        // lower-cased; "" = any
	Session  string        // sticky session id [A-Za-z0-9_]{1,64}; "" = rotate
	SessTime time.Duration // sticky idle lifetime; default 10m, max 1440m; only meaningful with Session (0 without)
}

// Bits of the keys already seen in one username, to reject duplicates.
const (
	keyZone = 1 << iota
	keyCountry
	keyCity
	keyDC
	keySession
	keySessTime
)

// ParseUsername parses a proxy username of the form USER[-key-value]...
//
// The keys, case-insensitive and in any order, each at most once, are
// zone, city and dc (1-64 of [A-Za-z0-9_], lower-cased), country (2 ASCII
// letters, upper-cased), session ([A-Za-z0-9_]{1,64}, case kept) and
// sesstime (integer minutes 1..1440; ignored without session). USER is 1-64
// of [A-Za-z0-9_.@] and contains no '-'.
//
// A malformed USER is an error wrapping ErrBadCredentials (no such customer
// can exist); any other malformation wraps ErrBadParams and names the key.
// The fields of the result are substrings of s except where lower- or
// upper-casing changed them, so a typical call does not allocate.
func ParseUsername(s string) (Target, error) {
	var t Target
	user, rest, _ := strings.Cut(s, "-")
	if !validUser(user) {
		return Target{}, fmt.Errorf("username: user %q: %s: %w", clip(user), userRuleText, ErrBadCredentials)
	}
	t.User = user
	var seen uint
	hasRest := len(user) < len(s)
	for hasRest {
		var key, value string
		key, rest, hasRest = strings.Cut(rest, "-")
		if key == "" {
			return Target{}, fmt.Errorf("username: empty part where a key was expected: %w", ErrBadParams)
		}
		if !hasRest {
			return Target{}, fmt.Errorf("username: key %q: missing value: %w", clip(key), ErrBadParams)
		}
		value, rest, hasRest = strings.Cut(rest, "-")
		if value == "" {
			return Target{}, fmt.Errorf("username: key %q: missing value: %w", clip(key), ErrBadParams)
		}
		bit, err := t.set(key, value)
		if err != nil {
			return Target{}, err
		}
		if seen&bit != 0 {
			return Target{}, fmt.Errorf("username: key %q: given twice: %w", clip(key), ErrBadParams)
		}
		seen |= bit
	}
	if t.Session == "" {
		t.SessTime = 0 // sesstime without a session is allowed and ignored
	} else if seen&keySessTime == 0 {
		t.SessTime = DefaultSessTime
	}
	return t, nil
}

// set stores one key-value pair in t and reports which key it was.
func (t *Target) set(key, value string) (uint, error) {
	switch {
	case strings.EqualFold(key, "zone"):
		if !validName(value) {
			return 0, badValue("zone", value, nameRuleText)
		}
		t.Zone = strings.ToLower(value)
		return keyZone, nil
	case strings.EqualFold(key, "country"):
		c, ok := countryCode(value)
		if !ok {
			return 0, badValue("country", value, "is not a 2-letter ISO code")
		}
		t.Country = c
		return keyCountry, nil
	case strings.EqualFold(key, "city"):
		if !validName(value) {
			return 0, badValue("city", value, nameRuleText)
		}
		t.City = strings.ToLower(value)
		return keyCity, nil
	case strings.EqualFold(key, "dc"):
		if !validName(value) {
			return 0, badValue("dc", value, nameRuleText)
		}
		t.DC = strings.ToLower(value)
		return keyDC, nil
	case strings.EqualFold(key, "session"):
		if !validName(value) {
			return 0, badValue("session", value, nameRuleText)
		}
		t.Session = value
		return keySession, nil
	case strings.EqualFold(key, "sesstime"):
		m, ok := minutes(value)
		if !ok {
			return 0, badValue("sesstime", value, "is not a whole number of minutes from 1 to 1440")
		}
		t.SessTime = time.Duration(m) * time.Minute
		return keySessTime, nil
	}
	if c := suggest.Closest(key, usernameKeys); c != "" {
		return 0, fmt.Errorf("username: key %q: unknown key, did you mean %s? (want zone, country, city, dc, session or sesstime): %w", clip(key), c, ErrBadParams)
	}
	return 0, fmt.Errorf("username: key %q: unknown key (want zone, country, city, dc, session or sesstime): %w", clip(key), ErrBadParams)
}

// usernameKeys are the keys of the username grammar, for suggestions.
var usernameKeys = []string{"zone", "country", "city", "dc", "session", "sesstime"}

const (
	userRuleText = "must be 1-64 of A-Z a-z 0-9 _ . @"
	nameRuleText = "must be 1-64 of A-Z a-z 0-9 _"
)

func badValue(key, value, why string) error {
	return fmt.Errorf("username: key %q: %q %s: %w", key, clip(value), why, ErrBadParams)
}

// clip shortens hostile input before it goes into an error message.
func clip(s string) string {
	if len(s) > MaxNameLen+8 {
		return s[:MaxNameLen] + "..."
	}
	return s
}

// validUser reports whether s is a user name: 1-64 of [A-Za-z0-9_.@].
func validUser(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isWord(c) && c != '.' && c != '@' {
			return false
		}
	}
	return true
}

// validName reports whether s is 1-64 of [A-Za-z0-9_], the rule for zone,
// city, dc, session and pool names.
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isWord(s[i]) {
			return false
		}
	}
	return true
}

func isWord(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// countries holds every upper-case 2-letter code, so upper-casing a country
// never allocates.
var countries = func() (a [26 * 26]string) {
	for i := range a {
		a[i] = string([]byte{'A' + byte(i/26), 'A' + byte(i%26)})
	}
	return a
}()

// countryCode upper-cases a 2-ASCII-letter code.
func countryCode(s string) (string, bool) {
	if len(s) != 2 {
		return "", false
	}
	a, ok1 := letterIndex(s[0])
	b, ok2 := letterIndex(s[1])
	if !ok1 || !ok2 {
		return "", false
	}
	return countries[a*26+b], true
}

func letterIndex(c byte) (int, bool) {
	switch {
	case 'a' <= c && c <= 'z':
		return int(c - 'a'), true
	case 'A' <= c && c <= 'Z':
		return int(c - 'A'), true
	}
	return 0, false
}

// minutes parses a decimal number of minutes in 1..1440. Leading zeros are
// accepted; at most 4 digits after them.
func minutes(s string) (int, bool) {
	s = strings.TrimLeft(s, "0")
	if len(s) == 0 || len(s) > 4 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n >= 1 && n <= int(MaxSessTime/time.Minute)
}

// String formats t back into a username, canonically: keys lower-case in the
// order zone, country, city, dc, session, sesstime; empty fields left out;
// sesstime written (in whole minutes) whenever there is a session.
// ParseUsername(t.String()) gives t back for any t that ParseUsername returned.
func (t Target) String() string {
	var b strings.Builder
	b.Grow(len(t.User) + len(t.Zone) + len(t.Country) + len(t.City) + len(t.DC) + len(t.Session) + 64)
	b.WriteString(t.User)
	add := func(key, value string) {
		if value != "" {
			b.WriteByte('-')
			b.WriteString(key)
			b.WriteByte('-')
			b.WriteString(value)
		}
	}
	add("zone", t.Zone)
	add("country", t.Country)
	add("city", t.City)
	add("dc", t.DC)
	add("session", t.Session)
	if t.Session != "" && t.SessTime > 0 {
		add("sesstime", strconv.FormatInt(int64(t.SessTime/time.Minute), 10))
	}
	return b.String()
}
