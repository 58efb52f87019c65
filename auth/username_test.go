package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseUsername(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want Target
	}{
		{"user alone rotates in the default pool", "alice", Target{User: "alice"}},
		{"user may hold dots, at-signs, underscores, digits", "a.b@c_9", Target{User: "a.b@c_9"}},
		{"zone selects the pool, lower-cased", "alice-zone-RESI", Target{User: "alice", Zone: "resi"}},
		{"country is upper-cased", "alice-country-us", Target{User: "alice", Country: "US"}},
		{"country in any case", "alice-country-De", Target{User: "alice", Country: "DE"}},
		{"city and dc are lower-cased", "alice-city-New_York-dc-EU", Target{User: "alice", City: "new_york", DC: "eu"}},
		{"session keeps its case and defaults to 10 minutes", "alice-session-AbC_1",
			Target{User: "alice", Session: "AbC_1", SessTime: 10 * time.Minute}},
		{"sesstime sets the sticky lifetime", "alice-session-s1-sesstime-30",
			Target{User: "alice", Session: "s1", SessTime: 30 * time.Minute}},
		{"sesstime before session", "alice-sesstime-1440-session-s1",
			Target{User: "alice", Session: "s1", SessTime: 1440 * time.Minute}},
		{"sesstime of 1 minute", "alice-session-s1-sesstime-1", Target{User: "alice", Session: "s1", SessTime: time.Minute}},
		{"sesstime with leading zeros", "alice-session-s1-sesstime-0005", Target{User: "alice", Session: "s1", SessTime: 5 * time.Minute}},
		{"sesstime without session is ignored", "alice-sesstime-30", Target{User: "alice"}},
		{"keys are case-insensitive", "alice-ZONE-dc-Country-fr-SESSION-x",
			Target{User: "alice", Zone: "dc", Country: "FR", Session: "x", SessTime: 10 * time.Minute}},
		{"every key in any order", "bob-session-s-dc-us-city-nyc-country-us-zone-resi-sesstime-60",
			Target{User: "bob", Zone: "resi", Country: "US", City: "nyc", DC: "us", Session: "s", SessTime: time.Hour}},
		{"64-character values", "alice-session-" + strings.Repeat("x", 64),
			Target{User: "alice", Session: strings.Repeat("x", 64), SessTime: 10 * time.Minute}},
		{"64-character user", strings.Repeat("u", 64), Target{User: strings.Repeat("u", 64)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseUsername(tc.in)
			if err != nil {
				t.Fatalf("ParseUsername(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParseUsername(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseUsernameErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    error
		message string // the whole error text, when it matters
		mention string // a substring the message must hold
	}{
		{name: "country must be 2 letters", in: "alice-country-usa", want: ErrBadParams,
			message: `username: key "country": "usa" is not a 2-letter ISO code: bad_params`},
		{name: "country must be letters", in: "alice-country-u1", want: ErrBadParams, mention: `"country"`},
		{name: "country must be ASCII", in: "alice-country-\u00fc", want: ErrBadParams, mention: `"country"`},
		{name: "unknown key", in: "alice-region-eu", want: ErrBadParams,
			message: `username: key "region": unknown key (want zone, country, city, dc, session or sesstime): bad_params`},
		{name: "unknown key foo", in: "alice-foo-bar", want: ErrBadParams,
			message: `username: key "foo": unknown key (want zone, country, city, dc, session or sesstime): bad_params`},
		{name: "misspelt key", in: "alice-contry-us", want: ErrBadParams,
			message: `username: key "contry": unknown key, did you mean country? (want zone, country, city, dc, session or sesstime): bad_params`},
		{name: "duplicate key", in: "alice-zone-a-zone-b", want: ErrBadParams,
			message: `username: key "zone": given twice: bad_params`},
		{name: "duplicate key in another case", in: "alice-zone-a-ZONE-a", want: ErrBadParams, mention: "given twice"},
		{name: "key without value at the end", in: "alice-zone", want: ErrBadParams,
			message: `username: key "zone": missing value: bad_params`},
		{name: "key with an empty value at the end", in: "alice-zone-", want: ErrBadParams, mention: "missing value"},
		{name: "empty part", in: "alice--zone-x", want: ErrBadParams, mention: "empty part"},
		{name: "empty value in the middle", in: "alice-zone--country-us", want: ErrBadParams, mention: "missing value"},
		{name: "trailing dash", in: "alice-", want: ErrBadParams, mention: "empty part"},
		{name: "trailing dash after a pair", in: "alice-zone-x-", want: ErrBadParams, mention: "empty part"},
		{name: "zone with a dot", in: "alice-zone-a.b", want: ErrBadParams, mention: `key "zone"`},
		{name: "city with a space", in: "alice-city-new york", want: ErrBadParams, mention: `key "city"`},
		{name: "dc with a slash", in: "alice-dc-eu/1", want: ErrBadParams, mention: `key "dc"`},
		{name: "session too long", in: "alice-session-" + strings.Repeat("x", 65), want: ErrBadParams, mention: `key "session"`},
		{name: "session with a dot", in: "alice-session-a.b", want: ErrBadParams, mention: `key "session"`},
		{name: "sesstime zero", in: "alice-session-s-sesstime-0", want: ErrBadParams, mention: `key "sesstime"`},
		{name: "sesstime above 1440", in: "alice-session-s-sesstime-1441", want: ErrBadParams, mention: `key "sesstime"`},
		{name: "sesstime not a number", in: "alice-session-s-sesstime-10m", want: ErrBadParams, mention: `key "sesstime"`},
		{name: "sesstime negative is an empty part", in: "alice-session-s-sesstime--5", want: ErrBadParams},
		{name: "sesstime huge", in: "alice-session-s-sesstime-99999999999999999999", want: ErrBadParams},
		{name: "empty user", in: "", want: ErrBadCredentials},
		{name: "empty user before targeting", in: "-zone-x", want: ErrBadCredentials},
		{name: "user with a bad character", in: "al!ce-zone-x", want: ErrBadCredentials, mention: `user "al!ce"`},
		{name: "user too long", in: strings.Repeat("u", 65), want: ErrBadCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseUsername(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseUsername(%q) = %+v, %v; want error wrapping %v", tc.in, got, err, tc.want)
			}
			if got != (Target{}) {
				t.Errorf("ParseUsername(%q) returned %+v with its error, want the zero Target", tc.in, got)
			}
			if tc.message != "" && err.Error() != tc.message {
				t.Errorf("error = %q, want %q", err, tc.message)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error = %q, want it to mention %s", err, tc.mention)
			}
		})
	}
}

func TestTargetString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"alice", "alice"},
		{"alice-sesstime-5", "alice"},
		{"alice-SESSION-S1-Country-us-zone-RESI", "alice-zone-resi-country-US-session-S1-sesstime-10"},
		{"a-dc-EU-city-Paris-sesstime-0060-session-x", "a-city-paris-dc-eu-session-x-sesstime-60"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			tg, err := ParseUsername(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := tg.String(); got != tc.want {
				t.Errorf("ParseUsername(%q).String() = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseUsernameAllocations(t *testing.T) {
	// Not parallel: AllocsPerRun measures the whole process.
	inputs := []string{
		"alice",
		"alice-zone-resi-country-us-session-s1-sesstime-30",
		"alice-zone-resi-country-US-city-berlin-dc-eu",
	}
	for _, in := range inputs {
		if n := testing.AllocsPerRun(100, func() {
			if _, err := ParseUsername(in); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("ParseUsername(%q) allocates %v times, want 0", in, n)
		}
	}
}

func BenchmarkParseUsername(b *testing.B) {
	for _, in := range []string{
		"alice",
		"alice-zone-resi-country-us-session-s1-sesstime-30",
		"alice-zone-RESI-country-us-city-Berlin", // two lower-casings allocate
	} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseUsername(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{
		"alice", "alice-zone-resi-country-us-session-s1-sesstime-30",
		"a.b@c-CITY-NYC-dc-US", "alice--zone-x", "alice-zone", "alice-sesstime-0001",
		"alice-country-usa", "-", "alice-session-x-session-y", "\xff-zone-\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := ParseUsername(s)
		if err != nil {
			if !errors.Is(err, ErrBadParams) && !errors.Is(err, ErrBadCredentials) {
				t.Fatalf("ParseUsername(%q): error %v wraps neither ErrBadParams nor ErrBadCredentials", s, err)
			}
			return
		}
		if !validUser(tg.User) || strings.Contains(tg.User, "-") {
			t.Fatalf("ParseUsername(%q): user %q breaks the user rule", s, tg.User)
		}
		if tg.Country != "" && (len(tg.Country) != 2 || tg.Country != strings.ToUpper(tg.Country) ||
			tg.Country[0] < 'A' || tg.Country[0] > 'Z' || tg.Country[1] < 'A' || tg.Country[1] > 'Z') {
			t.Fatalf("ParseUsername(%q): country %q is not 2 upper-case letters", s, tg.Country)
		}
		for _, v := range []string{tg.Zone, tg.City, tg.DC} {
			if v != "" && (!validName(v) || v != strings.ToLower(v)) {
				t.Fatalf("ParseUsername(%q): %q is not a lower-case name", s, v)
			}
		}
		switch {
		case tg.Session == "" && tg.SessTime != 0:
			t.Fatalf("ParseUsername(%q): sesstime %v without a session", s, tg.SessTime)
		case tg.Session != "" && (!validName(tg.Session) || tg.SessTime < time.Minute || tg.SessTime > MaxSessTime || tg.SessTime%time.Minute != 0):
			t.Fatalf("ParseUsername(%q): session %q with sesstime %v", s, tg.Session, tg.SessTime)
		}
		again, err := ParseUsername(tg.String())
		if err != nil {
			t.Fatalf("ParseUsername(%q).String() = %q does not parse: %v", s, tg.String(), err)
		}
		if again != tg {
			t.Fatalf("ParseUsername(%q) = %+v, but its String %q parses to %+v", s, tg, tg.String(), again)
		}
	})
}
