// Package yamlerr turns the errors of go.yaml.in/yaml/v3 into messages an
// operator can act on: "customers.yaml:3: usr: unknown key; did you mean
// user? (known: ...)". It names the file and the line of the mistake (the
// parser names the line before the block that contains it), says which keys
// a mapping accepts, and what a value of the wrong type should look like.
// It only explains errors; decoding stays with the caller.
package yamlerr

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/farmgate/farmgate/internal/suggest"
)

// Error is one mistake in a YAML file.
type Error struct {
	File string // the name the caller gave (usually the path)
	Line int    // 1-based; 0 when the parser gave none
	Msg  string
	err  error // yaml's own error
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.File + ": " + e.Msg
	}
	return e.File + ":" + strconv.Itoa(e.Line) + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.err }

// Wrap explains err, an error of yaml.Unmarshal or of a yaml.Decoder reading
// data, which came from the file called name. targets are values of the Go
// types data was decoded into (e.g. fileDoc{}): an unknown key is listed with
// the keys of the type that refused it. A type error holding several
// mistakes gives one *Error per mistake, joined. nil stays nil.
func Wrap(name string, data []byte, err error, targets ...any) error {
	if err == nil {
		return nil
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		known := keysOf(targets)
		var errs []error
		for _, s := range te.Errors {
			line, msg := splitLine(s)
			errs = append(errs, &Error{File: name, Line: line, Msg: explain(msg, known), err: err})
		}
		return errors.Join(errs...)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, msg := splitLine(msg)
	if line > 0 || strings.Contains(msg, "end of stream") {
		line = badLine(data, line)
	}
	return &Error{File: name, Line: line, Msg: msg, err: err}
}

var linePrefix = regexp.MustCompile(`^line (\d+): `)

// splitLine takes "line N: msg" apart; line is 0 without the prefix.
func splitLine(s string) (int, string) {
	m := linePrefix.FindStringSubmatch(s)
	if m == nil {
		return 0, s
	}
	n, _ := strconv.Atoi(m[1])
	return n, s[len(m[0]):]
}

// badLine finds the line of a syntax error: the first line at which the
// document stops parsing. The parser reports the line before the block it
// was in (its context, counted from 0), never after the mistake, so the
// search starts there. Binary search: a few parses even for a long file.
func badLine(data []byte, reported int) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	prefixFails := func(k int) bool { return !parses(bytes.Join(lines[:k], nil)) }
	lo, hi := max(reported, 1), len(lines)
	if hi < lo || !prefixFails(hi) {
		return reported
	}
	if prefixFails(lo) {
		return lo
	}
	for hi-lo > 1 { // lo parses, hi does not
		mid := (lo + hi) / 2
		if prefixFails(mid) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// parses reports whether every document of data is well-formed YAML.
func parses(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

var (
	notFound   = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	wrongType  = regexp.MustCompile("^cannot unmarshal !!(\\w+) `(.*)` into (\\S+)$")
	typeWanted = map[string]string{
		"int": "a whole number", "int64": "a whole number", "int32": "a whole number", "uint": "a whole number",
		"uint64": "a whole number", "float64": "a number", "bool": "true or false", "string": "a string",
		"time.Duration": "a duration such as 30s or 5m",
	}
)

// explain rewrites one type-error message of yaml.
func explain(msg string, known map[string][]string) string {
	if m := notFound.FindStringSubmatch(msg); m != nil {
		key, keys := m[1], known[m[2]]
		if len(keys) == 0 {
			return key + ": unknown key"
		}
		s := key + ": unknown key"
		if c := suggest.Closest(key, keys); c != "" {
			s += "; did you mean " + c + "?"
		}
		return s + " (known: " + strings.Join(keys, ", ") + ")"
	}
	if m := wrongType.FindStringSubmatch(msg); m != nil {
		kind, value, into := m[1], m[2], m[3]
		if want, ok := typeWanted[into]; ok {
			return fmt.Sprintf("%q is not %s", value, want)
		}
		switch {
		case strings.HasPrefix(into, "[]"):
			return fmt.Sprintf("want a list, got %s %q", yamlKind(kind), value)
		case strings.HasPrefix(into, "map["):
			return fmt.Sprintf("want a mapping (key: value), got %s %q", yamlKind(kind), value)
		}
		return fmt.Sprintf("want %s, got %s %q", into, yamlKind(kind), value)
	}
	return msg
}

func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "the string"
	case "int", "float":
		return "the number"
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	}
	return tag
}

// keysOf maps the Go type names of targets and of the structs inside them
// (as yaml's messages spell them, e.g. "auth.fileCustomer") to their YAML
// keys, sorted.
func keysOf(targets []any) map[string][]string {
	out := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || out[t.String()] != nil {
			return
		}
		out[t.String()] = []string{} // guards against recursion
		var keys []string
		for f := range t.Fields() {
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			keys = append(keys, name)
			walk(f.Type)
		}
		slices.Sort(keys)
		out[t.String()] = keys
	}
	for _, x := range targets {
		if x != nil {
			walk(reflect.TypeOf(x))
		}
	}
	return out
}
