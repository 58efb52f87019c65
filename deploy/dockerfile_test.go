package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	line int
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// dockerStage is a build stage: its FROM and the instructions after it.
type dockerStage struct {
	name, base string
	instrs     []dockerInstr
}

// parseDockerfile splits a Dockerfile into stages. It knows comments,
// parser directives (comments too, here) and '\' continuations.
func parseDockerfile(path string) ([]dockerStage, []dockerInstr, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var all []dockerInstr
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		text := cur.String()
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		all = append(all, dockerInstr{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
	}
	var stages []dockerStage
	for _, in := range all {
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			var st dockerStage
			for i := 0; i < len(fields); i++ {
				switch {
				case strings.HasPrefix(fields[i], "--"):
				case strings.EqualFold(fields[i], "AS") && i+1 < len(fields):
					st.name = fields[i+1]
					i++
				case st.base == "":
					st.base = fields[i]
				}
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	return stages, all, sc.Err()
}

func TestDockerfile(t *testing.T) {
	path := filepath.Join(repoRoot, "Dockerfile")
	stages, _, err := parseDockerfile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stage(s)", len(stages))
	}
	names := map[string]bool{}
	build := ""
	for _, st := range stages[:len(stages)-1] {
		names[st.name] = true
		for _, in := range st.instrs {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				build = st.name
				if !strings.Contains(in.args, "CGO_ENABLED=0") {
					t.Errorf("Dockerfile:%d: go build without CGO_ENABLED=0 (the binary must be static)", in.line)
				}
				if !strings.Contains(in.args, "-X main.version=") {
					t.Errorf("Dockerfile:%d: go build does not set -X main.version=", in.line)
				}
				if !strings.Contains(in.args, "./cmd/farmgate") {
					t.Errorf("Dockerfile:%d: go build does not build ./cmd/farmgate", in.line)
				}
			}
		}
	}
	if build == "" {
		t.Fatal("no build stage runs `go build`")
	}
	// main.version is what -X sets: it must exist as a string variable.
	main, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "farmgate", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^var version = "`).Match(main) {
		t.Error("cmd/farmgate/main.go declares no `var version = \"...\"` for -X main.version")
	}

	final := stages[len(stages)-1]
	var user, entrypoint string
	copied := false
	for _, in := range final.instrs {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			if m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.args); m != nil && names[m[1]] {
				copied = true
			}
		}
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("final stage runs as %q: want a non-root USER", user)
	}
	if !copied {
		t.Errorf("final stage copies nothing from an earlier stage (%v)", sortedKeys(names))
	}
	if !strings.Contains(entrypoint, "farmgate") {
		t.Errorf("ENTRYPOINT %q does not run farmgate", entrypoint)
	}
}

// TestDockerignoreKeepsTheBuildInputs checks that .dockerignore leaves in the
// context what the build needs and keeps out .git.
func TestDockerignoreKeepsTheBuildInputs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	ignored := func(p string) bool {
		out := false
		for _, pat := range patterns {
			neg := strings.HasPrefix(pat, "!")
			pat = strings.TrimPrefix(pat, "!")
			if dockerignoreMatch(pat, p) {
				out = !neg
			}
		}
		return out
	}
	for _, p := range []string{"go.mod", "go.sum", "cmd/farmgate/main.go", "gateway/admin/dashboard.html", "deploy/config/gateway.yaml", "deploy/config/exit.yaml", "pool/pool.go"} {
		if ignored(p) {
			t.Errorf(".dockerignore drops %s, which the image build needs", p)
		}
	}
	for _, p := range []string{".git/config", "e2e.test"} {
		if !ignored(p) {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
}

// dockerignoreMatch matches a .dockerignore pattern against a slash path: the
// pattern matches the path or one of its parent directories; "**/" matches
// any number of directories.
func dockerignoreMatch(pat, p string) bool {
	pat = strings.TrimPrefix(filepath.Clean(pat), "/")
	parts := strings.Split(p, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pat, prefix); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pat, "**/"); ok {
			for j := 0; j < i; j++ {
				if ok, _ := filepath.Match(rest, strings.Join(parts[j:i], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}
