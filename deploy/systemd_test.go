package deploy

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var systemdDir = filepath.Join(repoRoot, "deploy", "systemd")

// unitFile is a parsed systemd unit: section → key → values in order (keys
// such as LoadCredential= repeat).
type unitFile map[string]map[string][]string

// parseUnit reads the INI-like unit syntax: [Section] headers, Key=Value
// lines, '#' and ';' comments, and lines continued with a trailing '\'.
func parseUnit(path string) (unitFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	var pending strings.Builder
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if pending.Len() == 0 && (line == "" || line[0] == '#' || line[0] == ';') {
			continue
		}
		if pending.Len() > 0 && (strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";")) {
			continue // comments inside a continuation are skipped
		}
		if s, ok := strings.CutSuffix(line, "\\"); ok {
			pending.WriteString(s)
			pending.WriteByte(' ')
			continue
		}
		pending.WriteString(line)
		line = pending.String()
		pending.Reset()
		if strings.HasPrefix(line, "[") {
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("%s:%d: bad section header %q", path, n, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			return nil, fmt.Errorf("%s:%d: want Key=Value inside a [Section], got %q", path, n, line)
		}
		key = strings.TrimSpace(key)
		u[section][key] = append(u[section][key], strings.TrimSpace(val))
	}
	if pending.Len() > 0 {
		return nil, fmt.Errorf("%s: file ends in a continued line", path)
	}
	return u, sc.Err()
}

// last returns the effective value of a single-valued key.
func (u unitFile) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// splitExec splits a command line the way systemd does for Exec*=: on
// whitespace, honouring double and single quotes.
func splitExec(s string) []string {
	var out []string
	var cur strings.Builder
	var quote rune
	in := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '"' || r == '\'':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// readEnvFile returns the variable names of an EnvironmentFile.
func readEnvFile(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want NAME=value", path, n+1)
		}
		names = append(names, strings.TrimSpace(name))
	}
	return names, nil
}

func unitFiles(t *testing.T) []string {
	t.Helper()
	units, err := filepath.Glob(filepath.Join(systemdDir, "*.service"))
	if err != nil || len(units) == 0 {
		t.Fatalf("no units in %s (%v)", rel(systemdDir), err)
	}
	return units
}

// execLine returns the farmgate subcommand line of a unit's ExecStart=.
func execLine(t *testing.T, path string, u unitFile) []string {
	t.Helper()
	starts := u["Service"]["ExecStart"]
	if len(starts) != 1 {
		t.Fatalf("%s: want one ExecStart=, got %d", rel(path), len(starts))
	}
	argv := splitExec(starts[0])
	if len(argv) < 2 || filepath.Base(strings.TrimLeft(argv[0], "-@+!:")) != "farmgate" {
		t.Fatalf("%s: ExecStart= does not run farmgate: %q", rel(path), starts[0])
	}
	return argv[1:]
}

var credentialRef = regexp.MustCompile(`%d/([A-Za-z0-9_.-]+)`)

func TestSystemdUnitsAreHardened(t *testing.T) {
	for _, path := range unitFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			u, err := parseUnit(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, sec := range []string{"Unit", "Service", "Install"} {
				if u[sec] == nil {
					t.Errorf("no [%s] section", sec)
				}
			}
			args := execLine(t, path, u)
			want := map[string]string{
				"DynamicUser":           "yes",
				"NoNewPrivileges":       "yes",
				"PrivateTmp":            "yes",
				"ProtectSystem":         "strict",
				"ProtectHome":           "yes",
				"KillSignal":            "SIGTERM",
				"CapabilityBoundingSet": "CAP_NET_BIND_SERVICE",
			}
			for _, k := range sortedKeys(want) {
				if got := u.last("Service", k); got != want[k] {
					t.Errorf("%s=%q, want %q", k, got, want[k])
				}
			}
			if got := u.last("Service", "AmbientCapabilities"); !strings.Contains(got, "CAP_NET_BIND_SERVICE") {
				t.Errorf("AmbientCapabilities=%q, want CAP_NET_BIND_SERVICE", got)
			}
			if u.last("Service", "LimitNOFILE") == "" {
				t.Error("no LimitNOFILE=")
			}
			if got := strings.Join(strings.Fields(u.last("Service", "ExecReload")), " "); !regexp.MustCompile(`^(/usr)?/bin/kill -(s )?HUP \$MAINPID$`).MatchString(got) {
				t.Errorf("ExecReload=%q, want kill -HUP $MAINPID", got)
			}
			families := strings.Fields(u.last("Service", "RestrictAddressFamilies"))
			for _, f := range []string{"AF_INET", "AF_INET6", "AF_UNIX"} {
				if !contains(families, f) {
					t.Errorf("RestrictAddressFamilies=%v lacks %s", families, f)
				}
			}
			if wb := u.last("Install", "WantedBy"); wb != "multi-user.target" {
				t.Errorf("WantedBy=%q", wb)
			}
			// Every %d/NAME on the command line is a credential the unit loads.
			creds := map[string]bool{}
			for _, lc := range u["Service"]["LoadCredential"] {
				name, src, ok := strings.Cut(lc, ":")
				if !ok || !strings.HasPrefix(src, "/etc/farmgate/") {
					t.Errorf("LoadCredential=%s: want NAME:/etc/farmgate/...", lc)
				}
				creds[name] = true
			}
			for _, m := range credentialRef.FindAllStringSubmatch(strings.Join(args, " "), -1) {
				if !creds[m[1]] {
					t.Errorf("ExecStart= uses %%d/%s but no LoadCredential=%s:...", m[1], m[1])
				}
			}
			for _, f := range []string{"token-file", "gossip-key-file"} {
				if v, ok := flagValue(args, f); !ok || !strings.HasPrefix(v, "%d/") {
					t.Errorf("--%s=%q: want a credential (%%d/NAME)", f, v)
				}
			}
			if cfg, ok := flagValue(args, "config"); !ok {
				t.Error("ExecStart= has no --config")
			} else {
				shippedConfig(t, rel(path), cfg)
				if filepath.Base(cfg) != args[0]+".yaml" {
					t.Errorf("farmgate %s reads %s", args[0], cfg)
				}
			}
		})
	}
}

func TestSystemdNamesFlagsThatExist(t *testing.T) {
	var lines []commandLine
	var envs []envUse
	for _, path := range unitFiles(t) {
		u, err := parseUnit(path)
		if err != nil {
			t.Fatal(err)
		}
		args := execLine(t, path, u)
		lines = append(lines, commandLine{where: rel(path) + ": ExecStart", args: args})
		for _, ef := range u["Service"]["EnvironmentFile"] {
			ef = strings.TrimPrefix(ef, "-")
			if filepath.Dir(ef) != "/etc/farmgate" {
				t.Errorf("%s: EnvironmentFile=%s outside /etc/farmgate", rel(path), ef)
				continue
			}
			local := filepath.Join(systemdDir, filepath.Base(ef))
			names, err := readEnvFile(local)
			if err != nil {
				t.Errorf("%s: EnvironmentFile=%s: no shipped example: %v", rel(path), ef, err)
				continue
			}
			for _, n := range names {
				if !strings.HasPrefix(n, "FARMGATE_") {
					t.Errorf("%s: %s is not a FARMGATE_* variable", rel(local), n)
					continue
				}
				envs = append(envs, envUse{where: rel(local), sub: args[0], name: n})
			}
		}
		for _, e := range u["Service"]["Environment"] {
			for _, kv := range splitExec(e) {
				if n, _, _ := strings.Cut(kv, "="); strings.HasPrefix(n, "FARMGATE_") {
					envs = append(envs, envUse{where: rel(path) + ": Environment", sub: args[0], name: n})
				}
			}
		}
	}
	checkFlags(t, lines, envs)
}

// The shipped seeds are one list for the whole farm, gateways and exits:
// gateways restarted together find the exits through their seeds (issue 16).
func TestSystemdSeedsIncludeExits(t *testing.T) {
	var joins []string
	for _, f := range []string{"gateway.env", "exit.env"} {
		vars, err := readEnvValues(filepath.Join(systemdDir, f))
		if err != nil {
			t.Fatal(err)
		}
		join := vars["FARMGATE_JOIN"]
		roles := map[string]bool{}
		for _, seed := range strings.Split(join, ",") {
			host, _, err := net.SplitHostPort(seed)
			if err != nil {
				t.Errorf("%s: FARMGATE_JOIN seed %q: %v", f, seed, err)
				continue
			}
			switch {
			case strings.HasPrefix(host, "gw-"):
				roles["gateway"] = true
			case strings.HasPrefix(host, "exit-"):
				roles["exit"] = true
			}
		}
		if !roles["gateway"] || !roles["exit"] {
			t.Errorf("%s: FARMGATE_JOIN=%s, want gateways (gw-*) and exits (exit-*)", f, join)
		}
		joins = append(joins, join)
	}
	if joins[0] != joins[1] {
		t.Errorf("FARMGATE_JOIN differs between gateway.env (%s) and exit.env (%s): one list for the farm", joins[0], joins[1])
	}
}

// readEnvValues returns the variables of an EnvironmentFile.
func readEnvValues(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if name, val, ok := strings.Cut(line, "="); ok {
			out[strings.TrimSpace(name)] = strings.TrimSpace(val)
		}
	}
	return out, nil
}

// TestSystemdAnalyze runs systemd-analyze verify and an offline security
// assessment on the units, where systemd-analyze is installed.
func TestSystemdAnalyze(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	for _, path := range unitFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// verify wants the ExecStart= binary to exist.
		data = []byte(strings.ReplaceAll(string(data), "/usr/local/bin/farmgate", farmgateBin))
		local := filepath.Join(dir, filepath.Base(path))
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("systemd-analyze", "verify", local)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", filepath.Base(path), err, out)
		}
		cmd = exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=25", local)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("systemd-analyze security %s (exposure above 2.5?): %v\n%s", filepath.Base(path), err, out)
		} else if i := strings.Index(string(out), "Overall exposure level"); i >= 0 {
			t.Logf("%s", strings.TrimSpace(string(out[i:])))
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
