package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// Every error names the flag (or variable, or file line), the value, and
// what would be accepted.
func TestFlagErrorsNameFlagValueAndRemedy(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "exit.yaml")
	os.WriteFile(cfg, []byte("id: x\nidle-timeout: 5\n"), 0o600)
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("id: x\nlisten: 127.0.0.1:0\negres: 127.0.0.1\n"), 0o600)
	broken := filepath.Join(dir, "broken.yaml")
	os.WriteFile(broken, []byte("id: x\nallow-dest: [10.0.0.0/8\n"), 0o600)
	tests := []struct {
		name string
		env  []string // KEY=VALUE
		args []string
		want string
	}{
		{"duration without a unit", nil, []string{"--idle-timeout", "5"}, `--idle-timeout: "5" is not a duration; use a unit, e.g. 5s or 2m`},
		{"duration from the environment", []string{"FARMGATE_DIAL_TIMEOUT=10"}, nil, `FARMGATE_DIAL_TIMEOUT: "10" is not a duration; use a unit, e.g. 5s or 2m`},
		{"duration from the config file", nil, []string{"--config", cfg}, cfg + `:2: idle-timeout: "5" is not a duration; use a unit, e.g. 5s or 2m`},
		{"whole number", nil, []string{"--max-tunnels", "lots"}, `--max-tunnels: "lots" is not a whole number`},
		{"number out of range", nil, []string{"--weight", "99999999999999999999"}, `--weight: "99999999999999999999" is out of range`},
		{"unknown flag", nil, []string{"--listn", "x"}, `--listn: unknown flag; did you mean --listen? ('farmgate exit --help' lists them)`},
		{"flag without its value", nil, []string{"--listen"}, `--listen: needs a value`},
		{"unknown key in the config file", nil, []string{"--config", typo}, typo + `:3: egres: unknown setting; did you mean egress?`},
		{"YAML error on line 2", nil, []string{"--config", broken}, `--config: ` + broken + `:2: did not find expected ',' or ']'`},
		{"missing config file", nil, []string{"--config", filepath.Join(dir, "nope.yaml")}, `--config: open ` + filepath.Join(dir, "nope.yaml") + `: no such file or directory`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.env {
				k, v, _ := cut(kv)
				t.Setenv(k, v)
			}
			fs := newExitFlagSet()
			exitFlags(fs)
			_, err := parseFlags(fs, tc.args)
			if err == nil || !errors.As(err, new(usageError)) {
				t.Fatalf("err = %v, want a usage error", err)
			}
			if got := err.Error(); len(got) < len(tc.want) || got[:len(tc.want)] != tc.want {
				t.Errorf("got  %s\nwant %s...", got, tc.want)
			}
		})
	}
}

func cut(kv string) (string, string, bool) {
	for i := range kv {
		if kv[i] == '=' {
			return kv[:i], kv[i+1:], true
		}
	}
	return kv, "", false
}

func TestUnknownEnvNamesTheClosestVariable(t *testing.T) {
	t.Parallel()
	fs := newExitFlagSet()
	exitFlags(fs)
	got := unknownEnv(fs, []string{"FARMGATE_LISTN=1", "FARMGATE_LISTEN=2", "PATH=/bin", "FARMGATE_ZZZ=3", "FARMGATE_REDIS_URL=x"})
	want := []envTypo{{"FARMGATE_LISTN", "FARMGATE_LISTEN"}, {"FARMGATE_REDIS_URL", ""}, {"FARMGATE_ZZZ", ""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("unknownEnv = %+v, want %+v", got, want)
	}
}

func TestUnits(t *testing.T) {
	t.Parallel()
	sizes := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"100000000000", 1e11, true}, {"100GB", 1e11, true}, {"100 gb", 1e11, true},
		{"1.5TB", 1.5e12, true}, {"500MiB", 500 << 20, true}, {"1k", 1000, true}, {"2G", 2e9, true},
		{"100XB", 0, false}, {"-1GB", 0, false}, {"GB", 0, false}, {"", 0, false}, {"1e30", 0, false}, {"10000PB", 0, false},
	}
	for _, tc := range sizes {
		var b byteSize
		err := b.Set(tc.in)
		if (err == nil) != tc.ok || int64(b) != tc.want {
			t.Errorf("byteSize.Set(%q) = %d, %v; want %d, ok %v", tc.in, b, err, tc.want, tc.ok)
		}
	}
	rates := []struct {
		in   string
		want float64
		ok   bool
	}{
		{"5", 5, true}, {"5/s", 5, true}, {"300/m", 5, true}, {"300/min", 5, true}, {"18000/h", 5, true}, {"0.5/s", 0.5, true},
		{"5/day", 0, false}, {"x/s", 0, false}, {"-1", 0, false}, {"", 0, false}, {"Inf", 0, false},
	}
	for _, tc := range rates {
		var r perSecond
		err := r.Set(tc.in)
		if (err == nil) != tc.ok || float64(r) != tc.want {
			t.Errorf("perSecond.Set(%q) = %g, %v; want %g, ok %v", tc.in, r, err, tc.want, tc.ok)
		}
	}
}

func FuzzUnits(f *testing.F) {
	for _, s := range []string{"100GB", "1.5TB", "5/s", "300/m", "1e3", ".", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b byteSize
		if b.Set(s) == nil && b < 0 {
			t.Fatalf("byteSize %q = %d", s, b)
		}
		var r perSecond
		if r.Set(s) == nil && (r < 0 || r != r) {
			t.Fatalf("perSecond %q = %g", s, r)
		}
	})
}

var _ flag.Getter = (*byteSize)(nil)
var _ flag.Getter = (*perSecond)(nil)
