package sysmon

import (
	"slices"
	"testing"
)

func TestEnv(t *testing.T) {
	for _, tc := range []struct {
		name    string
		environ []string
		want    []string // nil: no re-execution
	}{
		{"no GODEBUG", []string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=schedtrace=2147483647"}},
		{"empty GODEBUG", []string{"GODEBUG=", "HOME=/"}, []string{"GODEBUG=schedtrace=2147483647", "HOME=/"}},
		{"other settings kept", []string{"GODEBUG=madvdontneed=1"}, []string{"GODEBUG=madvdontneed=1,schedtrace=2147483647"}},
		{"schedtrace already set", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, nil},
		{"set by a re-execution", []string{"GODEBUG=schedtrace=2147483647"}, nil},
		{"opted out", []string{"FARMGATE_SYSMON=default", "PATH=/bin"}, nil},
		{"other opt-out values re-execute", []string{"FARMGATE_SYSMON=yes"}, []string{"FARMGATE_SYSMON=yes", "GODEBUG=schedtrace=2147483647"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.environ)
			got, ok := Env(in)
			if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
				t.Fatalf("Env(%q) = %q, %v; want %q", tc.environ, got, ok, tc.want)
			}
			if !slices.Equal(in, tc.environ) {
				t.Fatalf("Env changed its argument: %q", in)
			}
		})
	}
}
