package suggest

import "testing"

func TestClosest(t *testing.T) {
	t.Parallel()
	flags := []string{"listen", "admin", "dc", "pool", "egress", "idle-timeout", "gossip-listen", "gossip-label"}
	tests := []struct {
		word, want string
	}{
		{"listn", "listen"},  // a letter left out
		{"LISTEN", "listen"}, // case does not count
		{"lsiten", "listen"}, // two letters swapped
		{"egres", "egress"},  // a letter left out
		{"pol", "pool"},      // short words allow one edit
		{"gossip-lable", "gossip-label"},
		{"idle_timeout", "idle-timeout"},
		{"xyz", ""},     // nothing near
		{"country", ""}, // a real word that is not a flag
		{"", ""},
	}
	for _, tc := range tests {
		if got := Closest(tc.word, flags); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.word, got, tc.want)
		}
	}
}

func FuzzClosest(f *testing.F) {
	f.Add("listn", "listen")
	f.Add("", "a")
	f.Fuzz(func(t *testing.T, word, cand string) {
		got := Closest(word, []string{cand})
		if got != "" && got != cand {
			t.Fatalf("Closest returned %q, not a candidate", got)
		}
		if distance(word, word) != 0 {
			t.Fatalf("distance(%q, itself) != 0", word)
		}
	})
}
