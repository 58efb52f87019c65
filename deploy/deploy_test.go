package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// farmgateBin is the binary built from ./cmd/farmgate by TestMain.
var farmgateBin string

// repoRoot is the repository root (the parent of deploy/).
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(wd)
}()

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "farmgate-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, "deploy tests:", err)
		os.Exit(1)
	}
	farmgateBin = filepath.Join(dir, "farmgate")
	build := exec.Command("go", "build", "-o", farmgateBin, "./cmd/farmgate")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "deploy tests: go build ./cmd/farmgate: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// commandLine is one farmgate invocation found in a deployment file.
type commandLine struct {
	where string   // file and place, for messages
	args  []string // args[0] is the subcommand
}

// envUse is one FARMGATE_* variable set in a deployment file for a subcommand.
type envUse struct {
	where, sub, name string
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]helpResult{}
)

type helpResult struct {
	flags map[string]bool
	err   error
}

// helpFlagLine matches a flag line of Go's flag.PrintDefaults: "  -name type".
var helpFlagLine = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9_.-]*)`)

// usageFlag matches a flag named in free-form usage text: "--name".
var usageFlag = regexp.MustCompile(`(?:^|[\s\[(|])--([a-z][a-z0-9-]*)`)

// flagsOf returns the flags `farmgate SUB --help` lists. Commands that print
// PrintDefaults-style help are read line by line; others (customers) by every
// --name in their usage text.
func flagsOf(sub string) (map[string]bool, error) {
	helpMu.Lock()
	defer helpMu.Unlock()
	if r, ok := helpCache[sub]; ok {
		return r.flags, r.err
	}
	out, err := exec.Command(farmgateBin, sub, "--help").CombinedOutput()
	flags := map[string]bool{}
	var rerr error
	switch {
	case bytes.Contains(out, []byte("unknown command")):
		rerr = fmt.Errorf("`farmgate %s --help`: farmgate has no %q command:\n%s", sub, sub, firstLines(out, 3))
	case err != nil:
		rerr = fmt.Errorf("`farmgate %s --help`: %v\n%s", sub, err, firstLines(out, 10))
	default:
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if m := helpFlagLine.FindStringSubmatch(sc.Text()); m != nil {
				flags[m[1]] = true
			}
		}
		if len(flags) == 0 {
			for _, m := range usageFlag.FindAllStringSubmatch(string(out), -1) {
				flags[m[1]] = true
			}
		}
		if len(flags) == 0 {
			rerr = fmt.Errorf("`farmgate %s --help` lists no flags:\n%s", sub, firstLines(out, 10))
		}
	}
	helpCache[sub] = helpResult{flags, rerr}
	return flags, rerr
}

func firstLines(b []byte, n int) string {
	lines := strings.SplitN(string(b), "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// flagNames returns the flag names used in args ("--a=b", "--a b", "-a").
func flagNames(args []string) []string {
	var names []string
	for _, a := range args {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name := strings.TrimLeft(a, "-")
		if i := strings.IndexByte(name, '='); i >= 0 {
			name = name[:i]
		}
		names = append(names, name)
	}
	return names
}

// flagValue returns the value of --name in args, and whether it is there.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		for _, p := range []string{"--" + name, "-" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// envFlag maps FARMGATE_EXIT_DIAL_TIMEOUT to exit-dial-timeout.
func envFlag(name string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "FARMGATE_"), "_", "-"))
}

// checkFlags reports every flag and FARMGATE_* variable that the binary does
// not know, each by name and place, and then one summary per subcommand.
func checkFlags(t *testing.T, lines []commandLine, envs []envUse) {
	t.Helper()
	missing := map[string]map[string]bool{} // sub → flag names
	miss := func(sub, flag string) {
		if missing[sub] == nil {
			missing[sub] = map[string]bool{}
		}
		missing[sub][flag] = true
	}
	for _, l := range lines {
		if len(l.args) == 0 {
			t.Errorf("%s: empty farmgate command line", l.where)
			continue
		}
		sub := l.args[0]
		known, err := flagsOf(sub)
		if err != nil {
			t.Errorf("%s: %v", l.where, err)
			continue
		}
		for _, f := range flagNames(l.args[1:]) {
			if !known[f] {
				t.Errorf("%s: farmgate %s has no flag --%s", l.where, sub, f)
				miss(sub, "--"+f)
			}
		}
	}
	for _, e := range envs {
		known, err := flagsOf(e.sub)
		if err != nil {
			t.Errorf("%s: %v", e.where, err)
			continue
		}
		if f := envFlag(e.name); !known[f] || f == "config" {
			t.Errorf("%s: %s names no flag of farmgate %s (want --%s)", e.where, e.name, e.sub, f)
			miss(e.sub, "--"+f)
		}
	}
	for _, sub := range sortedKeys(missing) {
		t.Errorf("MISSING in `farmgate %s --help`: %s", sub, strings.Join(sortedKeys(missing[sub]), " "))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// shippedConfig checks that a --config path names one of the example files
// in deploy/config, and returns that file's path.
func shippedConfig(t *testing.T, where, path string) string {
	t.Helper()
	local := filepath.Join(repoRoot, "deploy", "config", filepath.Base(path))
	if filepath.Dir(path) != "/etc/farmgate" {
		t.Errorf("%s: --config %s: want /etc/farmgate/NAME, NAME a file of deploy/config", where, path)
	}
	if _, err := os.Stat(local); err != nil {
		t.Errorf("%s: --config %s is not a shipped example: %v", where, path, err)
	}
	return local
}

// readmeCommands returns the farmgate command lines in a README's fenced code
// blocks (after joining "\" continuations), for example the
// `farmgate customers add ...` run through docker compose exec.
func readmeCommands(t *testing.T, path string) []commandLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []commandLine
	inCode := false
	var pending string
	for i, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inCode = !inCode
			pending = ""
			continue
		}
		if !inCode {
			continue
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			pending += s + " "
			continue
		}
		full := pending + line
		pending = ""
		if j := strings.Index(full, " #"); j >= 0 {
			full = full[:j]
		}
		fields := strings.Fields(full)
		for k := 0; k+1 < len(fields); k++ {
			if fields[k] != "farmgate" {
				continue
			}
			switch fields[k+1] {
			case "gateway", "exit", "demo", "customers":
				args := fields[k+1:]
				for n, a := range args { // stop at a pipe or redirection
					if a == "|" || a == "&&" || a == ";" || a == ">" {
						args = args[:n]
						break
					}
				}
				out = append(out, commandLine{where: fmt.Sprintf("%s:%d", rel(path), i+1), args: args})
			}
		}
	}
	return out
}

// rel returns path relative to the repository root, for messages.
func rel(path string) string {
	if r, err := filepath.Rel(repoRoot, path); err == nil {
		return r
	}
	return path
}

func TestREADMECommandsNameFlagsThatExist(t *testing.T) {
	var lines []commandLine
	for _, p := range []string{"compose/README.md", "systemd/README.md", "kubernetes/README.md"} {
		lines = append(lines, readmeCommands(t, filepath.Join(repoRoot, "deploy", p))...)
	}
	if len(lines) == 0 {
		t.Fatal("no farmgate command lines found in the deploy READMEs")
	}
	checkFlags(t, lines, nil)
}
