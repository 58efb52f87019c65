package yamlerr

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type doc struct {
	Customers []customer `yaml:"customers"`
}

type customer struct {
	User     string        `yaml:"user"`
	Pools    []string      `yaml:"pools"`
	MaxConns int           `yaml:"max_conns"`
	Rate     float64       `yaml:"rate_per_sec"`
	Idle     time.Duration `yaml:"idle"`
}

// decode decodes as the stores do: strictly, one document.
func decode(data string) error {
	dec := yaml.NewDecoder(strings.NewReader(data))
	dec.KnownFields(true)
	var d doc
	return dec.Decode(&d)
}

func TestWrapNamesTheLineOfTheMistake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, data, want string
	}{
		{"bad indentation in a list item", "customers:\n  - user: a\n   pools: [x]\n",
			"c.yaml:3: did not find expected '-' indicator"},
		{"unclosed flow list", "customers:\n- user: a\n  pools: [resi\n- user: b\n",
			"c.yaml:3: did not find expected ',' or ']'"},
		{"list item where a key was expected", "customers: []\n- user: b\n",
			"c.yaml:2: did not find expected key"},
		{"tab indentation", "customers:\n\t- user: a\n",
			"c.yaml:2: found character that cannot start any token"},
		{"mapping value in a plain scalar", "customers:\n- user: a: b\n",
			"c.yaml:2: mapping values are not allowed in this context"},
		{"unknown key with a near one", "customers:\n  - usr: a\n",
			"c.yaml:2: usr: unknown key; did you mean user? (known: idle, max_conns, pools, rate_per_sec, user)"},
		{"unknown top-level key", "custmers: []\n",
			"c.yaml:1: custmers: unknown key; did you mean customers? (known: customers)"},
		{"wrong type", "customers:\n- user: a\n  max_conns: lots\n",
			`c.yaml:3: "lots" is not a whole number`},
		{"duration without a unit", "customers:\n- user: a\n  idle: 5\n",
			`c.yaml:3: "5" is not a duration such as 30s or 5m`},
		{"list wanted", "customers:\n- user: a\n  pools: resi\n",
			`c.yaml:3: want a list, got the string "resi"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			yerr := decode(tc.data)
			if yerr == nil {
				t.Fatal("decoded without error")
			}
			err := Wrap("c.yaml", []byte(tc.data), yerr, doc{})
			if got := err.Error(); got != tc.want {
				t.Errorf("got  %s\nwant %s\n(yaml said: %v)", got, tc.want, yerr)
			}
			if !errors.Is(err, yerr) && !errors.As(err, new(*yaml.TypeError)) {
				t.Errorf("%v does not wrap yaml's error", err)
			}
		})
	}
}

func TestWrapSeveralMistakes(t *testing.T) {
	t.Parallel()
	data := "customers:\n- usr: a\n  max_conns: x\n"
	err := Wrap("c.yaml", []byte(data), decode(data), doc{})
	var es []*Error
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		es = append(es, e.(*Error))
	}
	if len(es) != 2 || es[0].Line != 2 || es[1].Line != 3 {
		t.Fatalf("got %v", err)
	}
}

func TestWrapNil(t *testing.T) {
	if Wrap("x", nil, nil) != nil {
		t.Fatal("Wrap(nil) != nil")
	}
}

// A long file costs a few parses, and the line is still right.
func TestWrapLongFile(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	b.WriteString("customers:\n")
	for range 5000 {
		b.WriteString("  - user: a\n    pools: [resi]\n")
	}
	b.WriteString("   pools: [x]\n") // line 10002
	err := Wrap("c.yaml", b.Bytes(), decode(b.String()), doc{})
	if e := new(Error); !errors.As(err, &e) || e.Line != 10002 {
		t.Fatalf("got %v", err)
	}
}

func FuzzWrap(f *testing.F) {
	f.Add("customers:\n  - user: a\n   pools: [x]\n")
	f.Add("a: [\n")
	f.Add("customers:\n- usr: a\n")
	f.Fuzz(func(t *testing.T, data string) {
		yerr := decode(data)
		err := Wrap("f", []byte(data), yerr, doc{})
		if (yerr == nil) != (err == nil) {
			t.Fatalf("Wrap(%v) = %v", yerr, err)
		}
		var e *Error
		// yaml breaks lines at \r too: an upper bound of its line count.
		if err != nil && errors.As(err, &e) && e.Line > strings.Count(data, "\n")+strings.Count(data, "\r")+1 {
			t.Fatalf("line %d past the end of %q", e.Line, data)
		}
	})
}
