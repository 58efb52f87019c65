package main

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"time"

	"github.com/farmgate/farmgate/internal/suggest"
)

// parseArgs parses args into fs and turns the flag package's errors into
// ones that name the flag as it is typed (--name), the value, and what
// would be accepted: "--idle-timeout: "5" is not a duration; use a unit,
// e.g. 5s or 2m" instead of "invalid value "5" for flag -idle-timeout:
// parse error". flag.ErrHelp is returned as it is.
func parseArgs(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return usageError{explainParseError(fs, err)}
}

var (
	badValue    = regexp.MustCompile(`^invalid value "(.*)" for flag -(\S+): (.*)$`)
	badBool     = regexp.MustCompile(`^invalid boolean value "(.*)" for -(\S+): (.*)$`)
	undefined   = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	noArgument  = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
	commandName = func(fs *flag.FlagSet) string { return "farmgate " + fs.Name() }
)

func explainParseError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if m := badValue.FindStringSubmatch(msg); m != nil {
		if f := fs.Lookup(m[2]); f != nil {
			return fmt.Errorf("--%s: %w", f.Name, explainValue(f, m[1], errors.New(m[3])))
		}
	}
	if m := badBool.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s: %q: want true or false (or give the flag alone for true)", m[2], m[1])
	}
	if m := undefined.FindStringSubmatch(msg); m != nil {
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		hint := ""
		if c := suggest.Closest(m[1], names); c != "" {
			hint = "; did you mean --" + c + "?"
		}
		return fmt.Errorf("--%s: unknown flag%s ('%s --help' lists them)", m[1], hint, commandName(fs))
	}
	if m := noArgument.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("--%s: needs a value", m[1])
	}
	return err
}

// explainValue says why value v does not suit flag f, whose Set returned
// err: the flag package's own types answer only "parse error". The
// message starts with the value and ends with what would be accepted; the
// caller puts the flag's, the variable's or the file's name in front.
// Values of farmgate's own flag types explain themselves.
func explainValue(f *flag.Flag, v string, err error) error {
	// The flag package's types fail with these two texts; ours say more.
	outOfRange := err.Error() == "value out of range"
	g, ok := f.Value.(flag.Getter)
	if !ok || err.Error() != "parse error" && !outOfRange {
		return err
	}
	switch g.Get().(type) {
	case time.Duration:
		return fmt.Errorf("%q is not a duration; use a unit, e.g. 5s or 2m", v)
	case int, int64, uint, uint64:
		if outOfRange {
			return fmt.Errorf("%q is out of range", v)
		}
		return fmt.Errorf("%q is not a whole number", v)
	case float64:
		return fmt.Errorf("%q is not a number", v)
	case bool:
		return fmt.Errorf("%q: want true or false", v)
	}
	return err
}
