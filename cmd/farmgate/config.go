package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/farmgate/farmgate/internal/suggest"
	"github.com/farmgate/farmgate/internal/yamlerr"
)

// parseFlags parses args into fs, first applying the YAML file named by
// --config (its keys are flag names; lists become comma-separated values).
// Values on the command line override the file. Keys listed in extra are
// not flags: their YAML nodes are returned for the caller to decode.
func parseFlags(fs *flag.FlagSet, args []string, extra ...string) (map[string]*yaml.Node, error) {
	fs.SetOutput(io.Discard)
	configPath := fs.String("config", "", "YAML file with the same settings as the flags")
	if err := parseArgs(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	out := map[string]*yaml.Node{}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *configPath != "" {
		if err := applyFile(fs, *configPath, set, extra, out); err != nil {
			return nil, err
		}
	}
	if err := applyEnv(fs, set); err != nil {
		return nil, err
	}
	return out, nil
}

// EnvPrefix names the environment variables that override the config file:
// --exit-dial-timeout is FARMGATE_EXIT_DIAL_TIMEOUT.
const EnvPrefix = "FARMGATE_"

func envName(flagName string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// applyEnv sets flags not given on the command line from FARMGATE_*
// variables. A repeatable flag takes a comma-separated list.
func applyEnv(fs *flag.FlagSet, set map[string]bool) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] || f.Name == "config" {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		// A value read from a file (a Kubernetes Secret, an env file) often
		// ends in a newline that no setting wants.
		v = strings.TrimSpace(v)
		if l, isList := f.Value.(*listFlag); isList {
			*l = nil
			for item := range strings.SplitSeq(v, ",") {
				if item = strings.TrimSpace(item); item != "" {
					l.Set(item)
				}
			}
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = usageError{fmt.Errorf("%s: %w", envName(f.Name), explainValue(f, v, serr))}
		}
	})
	return err
}

// applyFile sets flags not given on the command line from the YAML file;
// keys in extra are returned as nodes in out.
func applyFile(fs *flag.FlagSet, configPath string, set map[string]bool, extra []string, out map[string]*yaml.Node) error {
	data, err := os.ReadFile(configPath)
	if err != nil {
		return usageError{fmt.Errorf("--config: %w", err)}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return usageError{fmt.Errorf("--config: %w", yamlerr.Wrap(configPath, data, err))}
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return usageError{fmt.Errorf("%s: want a mapping of settings", configPath)}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		key, val := root.Content[i].Value, root.Content[i+1]
		if contains(extra, key) {
			out[key] = val
			continue
		}
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			hint := ""
			if c := suggest.Closest(key, knownNames(fs, extra)); c != "" {
				hint = "; did you mean " + c + "?"
			}
			return usageError{fmt.Errorf("%s:%d: %s: unknown setting%s (known: %s)", configPath, root.Content[i].Line, key, hint, known(fs, extra))}
		}
		if set[key] {
			continue
		}
		var vals []string
		switch val.Kind {
		case yaml.ScalarNode:
			vals = []string{val.Value}
		case yaml.SequenceNode:
			for _, n := range val.Content {
				if n.Kind != yaml.ScalarNode {
					return usageError{fmt.Errorf("%s:%d: %s: want a list of values", configPath, n.Line, key)}
				}
				vals = append(vals, n.Value)
			}
		default:
			return usageError{fmt.Errorf("%s:%d: %s: want a value or a list", configPath, val.Line, key)}
		}
		if _, repeatable := f.Value.(*listFlag); !repeatable {
			vals = []string{strings.Join(vals, ",")}
		}
		for _, v := range vals {
			if err := f.Value.Set(v); err != nil {
				return usageError{fmt.Errorf("%s:%d: %s: %w", configPath, val.Line, key, explainValue(f, v, err))}
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func known(fs *flag.FlagSet, extra []string) string {
	return strings.Join(knownNames(fs, extra), ", ")
}

// knownNames lists the settings a config file may hold, sorted.
func knownNames(fs *flag.FlagSet, extra []string) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" {
			names = append(names, f.Name)
		}
	})
	names = append(names, extra...)
	sort.Strings(names)
	return names
}

// envTypo is a FARMGATE_* variable that sets no flag.
type envTypo struct {
	name    string
	closest string // the known variable it is nearest to, or ""
}

// unknownEnv lists the FARMGATE_* variables of environ that set no flag of
// fs, sorted: a misspelt name (FARMGATE_LISTN) would otherwise be ignored
// without a word.
func unknownEnv(fs *flag.FlagSet, environ []string) []envTypo {
	var names []string // without the prefix, which would make any two look alike
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" {
			names = append(names, strings.TrimPrefix(envName(f.Name), EnvPrefix))
		}
	})
	var out []envTypo
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, EnvPrefix)
		if !ok || contains(names, rest) {
			continue
		}
		e := envTypo{name: name}
		if c := suggest.Closest(rest, names); c != "" {
			e.closest = EnvPrefix + c
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// warnUnknownEnv logs one line per variable unknownEnv finds.
func warnUnknownEnv(fs *flag.FlagSet, logger *slog.Logger) {
	for _, e := range unknownEnv(fs, os.Environ()) {
		args := []any{"var", e.name, "command", fs.Name()}
		if e.closest != "" {
			args = append(args, "did_you_mean", e.closest)
		}
		logger.Warn("unknown FARMGATE_ variable ignored", args...)
	}
}

// listFlag is a repeatable flag (--exit a=b --exit c=d).
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// csvAddrs parses "IP,IP".
func csvAddrs(name, s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, usageError{fmt.Errorf("--%s: %q is not an IP address", name, f)}
		}
		out = append(out, a)
	}
	return out, nil
}

// csvPrefixes parses "CIDR,CIDR".
func csvPrefixes(name, s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, usageError{fmt.Errorf("--%s: %q is not a CIDR prefix", name, f)}
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// readToken reads the gateway↔exit token, whitespace trimmed.
func readToken(path string) (string, error) { return readTokenFlag("token-file", path) }

// readTokenFlag reads the token in the file flag --name names, whitespace
// trimmed; errors name the flag.
func readTokenFlag(name, path string) (string, error) {
	if path == "" {
		return "", usageError{fmt.Errorf("--%s: required", name)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usageError{fmt.Errorf("--%s: %w", name, err)}
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", usageError{fmt.Errorf("--%s: %s is empty", name, path)}
	}
	return t, nil
}

// newAccessLog builds the access logger for --access-log.
func newAccessLog(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "off", "":
		return nil, nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	}
	return nil, usageError{fmt.Errorf("--access-log: want off, json or text, got %q", format)}
}
