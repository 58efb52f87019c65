package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var composeFile = filepath.Join(repoRoot, "deploy", "compose", "compose.yaml")

// composeService is the part of a compose service the tests read.
type composeService struct {
	Image       string `yaml:"image"`
	Build       any    `yaml:"build"`
	Command     any    `yaml:"command"`
	Entrypoint  any    `yaml:"entrypoint"`
	Environment any    `yaml:"environment"`
	Volumes     []any  `yaml:"volumes"`
}

type composeProject struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
	Networks map[string]any            `yaml:"networks"`
}

func loadCompose(t *testing.T) composeProject {
	t.Helper()
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var p composeProject
	if err := yaml.Unmarshal(data, &p); err != nil {
		t.Fatalf("%s: %v", rel(composeFile), err)
	}
	if len(p.Services) == 0 {
		t.Fatalf("%s: no services", rel(composeFile))
	}
	return p
}

// isFarmgate says whether a service runs the farmgate image (whose
// entrypoint is the binary, so its command starts with the subcommand).
func (s composeService) isFarmgate() bool {
	if e := words(s.Entrypoint); len(e) > 0 && e[0] == "sh" {
		return false // a job that runs a script (certs), checked on its own
	}
	return s.Build != nil || strings.HasPrefix(s.Image, "farmgate")
}

// words returns a compose command or entrypoint as a list.
func words(v any) []string {
	switch v := v.(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			out = append(out, fmt.Sprint(x))
		}
		return out
	}
	return nil
}

// envNames returns the variable names of a compose environment (map or list).
func envNames(v any) []string {
	var out []string
	switch v := v.(type) {
	case map[string]any:
		out = sortedKeys(v)
	case []any:
		for _, x := range v {
			name, _, _ := strings.Cut(fmt.Sprint(x), "=")
			out = append(out, name)
		}
	}
	return out
}

// mounts returns a service's volume mounts as target → source.
func (s composeService) mounts() map[string]string {
	out := map[string]string{}
	for _, v := range s.Volumes {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 {
				out[parts[1]] = parts[0]
			}
		case map[string]any:
			out[fmt.Sprint(v["target"])] = fmt.Sprint(v["source"])
		}
	}
	return out
}

func TestComposeFarm(t *testing.T) {
	p := loadCompose(t)
	dcs := map[string]map[string]bool{"gateway": {}, "exit": {}}
	count := map[string]int{}
	redis := false
	for name, s := range p.Services {
		if strings.HasPrefix(s.Image, "redis") {
			redis = true
		}
		if !s.isFarmgate() {
			continue
		}
		args := words(s.Command)
		if len(args) == 0 {
			t.Errorf("service %s: no command", name)
			continue
		}
		count[args[0]]++
		if dc, ok := flagValue(args, "dc"); ok && dcs[args[0]] != nil {
			dcs[args[0]][dc] = true
		}
	}
	if count["gateway"] != 2 || count["exit"] != 4 || !redis {
		t.Errorf("want 2 gateways, 4 exits and Redis; got %d gateways, %d exits, redis=%v", count["gateway"], count["exit"], redis)
	}
	for role, set := range dcs {
		if len(set) != 2 {
			t.Errorf("%ss span DCs %v, want 2", role, sortedKeys(set))
		}
	}
}

// Every node's seeds are every gateway and every exit: gateways restarted
// together find the exits through their seeds (issue 16), whichever starts
// first. A node's own name in the list is skipped by farmgate.
func TestComposeSeedsAreEveryNode(t *testing.T) {
	p := loadCompose(t)
	var nodes []string
	joins := map[string]string{}
	for name, s := range p.Services {
		args := words(s.Command)
		if !s.isFarmgate() || len(args) == 0 || (args[0] != "gateway" && args[0] != "exit") {
			continue
		}
		nodes = append(nodes, name+":7946")
		join, ok := flagValue(args, "join")
		if !ok {
			t.Errorf("service %s: no --join", name)
			continue
		}
		joins[name] = join
	}
	slices.Sort(nodes)
	for name, join := range joins {
		seeds := strings.Split(join, ",")
		slices.Sort(seeds)
		if !slices.Equal(seeds, nodes) {
			t.Errorf("service %s: --join %s, want every gateway and exit: %s", name, join, strings.Join(nodes, ","))
		}
	}
}

func TestComposeNamesFlagsThatExist(t *testing.T) {
	p := loadCompose(t)
	var lines []commandLine
	var envs []envUse
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		if !s.isFarmgate() {
			continue
		}
		where := fmt.Sprintf("%s: service %s", rel(composeFile), name)
		args := append(words(s.Entrypoint), words(s.Command)...)
		if len(args) > 0 && filepath.Base(args[0]) == "farmgate" {
			args = args[1:]
		}
		lines = append(lines, commandLine{where: where, args: args})
		for _, e := range envNames(s.Environment) {
			if strings.HasPrefix(e, "FARMGATE_") && len(args) > 0 {
				envs = append(envs, envUse{where: where, sub: args[0], name: e})
			}
		}
	}
	checkFlags(t, lines, envs)
}

func TestComposeMountsShippedConfigs(t *testing.T) {
	p := loadCompose(t)
	dir := filepath.Dir(composeFile)
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		if !s.isFarmgate() {
			continue
		}
		where := fmt.Sprintf("%s: service %s", rel(composeFile), name)
		args := words(s.Command)
		path, ok := flagValue(args, "config")
		if !ok {
			t.Errorf("%s: no --config", where)
			continue
		}
		want := shippedConfig(t, where, path)
		src, ok := s.mounts()[path]
		if !ok {
			t.Errorf("%s: --config %s is not mounted", where, path)
			continue
		}
		if got := filepath.Clean(filepath.Join(dir, src)); got != want {
			t.Errorf("%s: %s is mounted from %s, want %s", where, path, rel(got), rel(want))
		}
		if filepath.Base(path) != args[0]+".yaml" {
			t.Errorf("%s: farmgate %s reads %s, want %s.yaml", where, args[0], path, args[0])
		}
	}
}

// TestComposeConfig runs `docker compose config`, which validates the file
// against the compose specification without a Docker engine.
func TestComposeConfig(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("docker CLI not installed: skipping `docker compose config`")
	}
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("`docker compose version` failed (no compose plugin): skipping `docker compose config`: %v: %s", err, strings.TrimSpace(string(out)))
	}
	cmd := exec.Command("docker", "compose", "-f", composeFile, "config", "--quiet")
	cmd.Dir = filepath.Dir(composeFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker compose config: %v\n%s", err, out)
	}
}

// The certs job's script runs here as compose would run it (farmgate at
// /out/farmgate, volumes at /ca and /secrets become directories), twice:
// every node's --tls-cert, --tls-key and --tls-ca then name a file it made
// that names that node, and the second run keeps them.
func TestComposeCertsJobMintsEveryNodesCertificate(t *testing.T) {
	p := loadCompose(t)
	job, ok := p.Services["certs"]
	if !ok {
		t.Fatal("no certs service")
	}
	cmd := words(job.Command)
	script, ok := job.Command.([]any)
	if !ok || len(script) != 1 || len(cmd) == 0 {
		t.Fatalf("certs: command is %v, want one script", job.Command)
	}
	dir := t.TempDir()
	ca, secrets := filepath.Join(dir, "ca"), filepath.Join(dir, "secrets")
	os.Mkdir(ca, 0o700)
	os.Mkdir(secrets, 0o700)
	text := strings.NewReplacer("$$", "$", "/out/farmgate", farmgateBin, "/farm-ca", ca, "/secrets", secrets).Replace(script[0].(string))
	if os.Getuid() != 0 {
		text = strings.ReplaceAll(text, "chown -R 65532:65532", "true")
	}
	run := func() {
		t.Helper()
		if out, err := exec.Command("sh", "-euc", text).CombinedOutput(); err != nil {
			t.Fatalf("certs script: %v\n%s", err, out)
		}
	}
	run()
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	caPEM, gwPEM := read(filepath.Join(secrets, "tls", "ca.pem")), read(filepath.Join(secrets, "tls", "gw-eu.pem"))
	os.Chmod(filepath.Join(secrets, "tls"), 0o700) // the script left it read-only for its owner
	run()
	if read(filepath.Join(secrets, "tls", "ca.pem")) != caPEM || read(filepath.Join(secrets, "tls", "gw-eu.pem")) != gwPEM {
		t.Errorf("a second run replaced the CA or a node's certificate")
	}
	for _, name := range sortedKeys(p.Services) {
		s := p.Services[name]
		if !s.isFarmgate() {
			continue
		}
		args := words(s.Command)
		for _, f := range []string{"tls-cert", "tls-key", "tls-ca"} {
			path, ok := flagValue(args, f)
			if !ok {
				t.Errorf("service %s: no --%s", name, f)
				continue
			}
			const mount = "/run/secrets/farmgate/"
			if !strings.HasPrefix(path, mount) {
				t.Errorf("service %s: --%s %s is not in the secrets volume", name, f, path)
				continue
			}
			if _, err := os.Stat(filepath.Join(secrets, strings.TrimPrefix(path, mount))); err != nil {
				t.Errorf("service %s: --%s %s: the certs job made no such file", name, f, path)
			}
		}
		// An exit's certificate must name its --id: gateways refuse any other.
		if id, ok := flagValue(args, "id"); ok && args[0] == "exit" {
			if cert, _ := flagValue(args, "tls-cert"); filepath.Base(cert) != id+".pem" {
				t.Errorf("service %s: --tls-cert %s, want the certificate issued for --id %s", name, cert, id)
			}
		}
	}
}
