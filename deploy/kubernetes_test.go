package deploy

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite deploy/kubernetes/configmap.yaml from deploy/config/*.yaml")

var (
	k8sDir        = filepath.Join(repoRoot, "deploy", "kubernetes")
	configMapFile = filepath.Join(k8sDir, "configmap.yaml")
)

// k8sObject is one parsed manifest document.
type k8sObject struct {
	where string // file:document
	obj   map[string]any
}

func (o k8sObject) kind() string { return str(o.obj["kind"]) }
func (o k8sObject) name() string { return str(dig(o.obj, "metadata", "name")) }

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// dig walks nested maps.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func list(v any) []map[string]any {
	var out []map[string]any
	if l, ok := v.([]any); ok {
		for _, x := range l {
			if m, ok := x.(map[string]any); ok {
				out = append(out, m)
			}
		}
	}
	return out
}

func strMap(v any) map[string]string {
	out := map[string]string{}
	if m, ok := v.(map[string]any); ok {
		for k, x := range m {
			out[k] = str(x)
		}
	}
	return out
}

// loadK8s parses every document of every *.yaml file in deploy/kubernetes.
func loadK8s(t *testing.T) []k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", rel(k8sDir), err)
	}
	var objs []k8sObject
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 1; ; i++ {
			var m map[string]any
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", rel(f), i, err)
			}
			if m == nil {
				continue
			}
			o := k8sObject{where: fmt.Sprintf("%s#%d", rel(f), i), obj: m}
			if o.kind() == "" || str(m["apiVersion"]) == "" {
				t.Errorf("%s: no apiVersion or kind", o.where)
			}
			if o.kind() != "Kustomization" && o.name() == "" {
				t.Errorf("%s: no metadata.name", o.where)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func byKind(objs []k8sObject, kind string) []k8sObject {
	var out []k8sObject
	for _, o := range objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// podTemplates returns the Deployments' and DaemonSets' pod templates.
func podTemplates(objs []k8sObject) []k8sObject {
	var out []k8sObject
	for _, o := range objs {
		if o.kind() == "Deployment" || o.kind() == "DaemonSet" || o.kind() == "StatefulSet" {
			if tpl, ok := dig(o.obj, "spec", "template").(map[string]any); ok {
				out = append(out, k8sObject{where: o.where + " (" + o.kind() + " " + o.name() + ")", obj: tpl})
			}
		}
	}
	return out
}

// farmgateContainers returns each farmgate container of each pod template
// with its full argument list (command + args, the binary dropped).
func farmgateContainers(objs []k8sObject) []struct {
	where string
	c     map[string]any
	args  []string
} {
	var out []struct {
		where string
		c     map[string]any
		args  []string
	}
	for _, tpl := range podTemplates(objs) {
		for _, c := range list(dig(tpl.obj, "spec", "containers")) {
			image := str(c["image"])
			if !strings.HasPrefix(filepath.Base(image), "farmgate") {
				continue
			}
			args := append(words(c["command"]), words(c["args"])...)
			if len(args) > 0 && filepath.Base(args[0]) == "farmgate" {
				args = args[1:]
			}
			out = append(out, struct {
				where string
				c     map[string]any
				args  []string
			}{tpl.where + " container " + str(c["name"]), c, args})
		}
	}
	return out
}

func matches(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetesNamesFlagsThatExist(t *testing.T) {
	objs := loadK8s(t)
	var lines []commandLine
	var envs []envUse
	cs := farmgateContainers(objs)
	if len(cs) == 0 {
		t.Fatal("no farmgate containers in the manifests")
	}
	varRef := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, c := range cs {
		lines = append(lines, commandLine{where: c.where, args: c.args})
		defined := map[string]bool{}
		for _, e := range list(c.c["env"]) {
			name := str(e["name"])
			defined[name] = true
			if strings.HasPrefix(name, "FARMGATE_") && len(c.args) > 0 {
				envs = append(envs, envUse{where: c.where, sub: c.args[0], name: name})
			}
		}
		for _, a := range c.args {
			for _, m := range varRef.FindAllStringSubmatch(a, -1) {
				if !defined[m[1]] {
					t.Errorf("%s: %q uses $(%s), which the container's env does not define", c.where, a, m[1])
				}
			}
		}
	}
	checkFlags(t, lines, envs)
}

func TestKubernetesManifests(t *testing.T) {
	objs := loadK8s(t)
	if s := byKind(objs, "Secret"); len(s) > 0 {
		t.Errorf("%s: a Secret manifest: kubectl apply -k would overwrite the operator's Secret with it; generate it from files (secretGenerator)", s[0].where)
	}
	secrets := generatedSecrets(t)
	configMaps := map[string]map[string]string{}
	for _, c := range byKind(objs, "ConfigMap") {
		configMaps[c.name()] = strMap(dig(c.obj, "data"))
	}

	// Every Secret and ConfigMap a pod refers to exists, with the keys used.
	for _, tpl := range podTemplates(objs) {
		for _, v := range list(dig(tpl.obj, "spec", "volumes")) {
			var have map[string]string
			var ok bool
			var what string
			if name := str(dig(v, "secret", "secretName")); name != "" {
				have, ok, what = secrets[name], secrets[name] != nil, "Secret "+name
				v = v["secret"].(map[string]any)
			} else if name := str(dig(v, "configMap", "name")); name != "" {
				have, ok, what = configMaps[name], configMaps[name] != nil, "ConfigMap "+name
				v = v["configMap"].(map[string]any)
			} else {
				continue
			}
			if !ok {
				t.Errorf("%s: volume uses %s, which no manifest defines", tpl.where, what)
				continue
			}
			for _, it := range list(v["items"]) {
				if _, ok := have[str(it["key"])]; !ok {
					t.Errorf("%s: %s has no key %s", tpl.where, what, str(it["key"]))
				}
			}
		}
		for _, c := range list(dig(tpl.obj, "spec", "containers")) {
			for _, e := range list(c["env"]) {
				if ref, ok := dig(e, "valueFrom", "secretKeyRef").(map[string]any); ok {
					if _, ok := secrets[str(ref["name"])][str(ref["key"])]; !ok {
						t.Errorf("%s: env %s: Secret %s has no key %s", tpl.where, str(e["name"]), str(ref["name"]), str(ref["key"]))
					}
				}
			}
		}
	}

	// Every Service selects pods; the headless gossip Service selects both
	// gateways and exits, and is what --join names.
	tpls := podTemplates(objs)
	headless := ""
	for _, s := range byKind(objs, "Service") {
		sel := strMap(dig(s.obj, "spec", "selector"))
		roles := map[string]bool{}
		for _, tpl := range tpls {
			if matches(sel, strMap(dig(tpl.obj, "metadata", "labels"))) {
				roles[strMap(dig(tpl.obj, "metadata", "labels"))["app.kubernetes.io/component"]] = true
			}
		}
		if len(roles) == 0 {
			t.Errorf("%s: Service %s selects no pod template", s.where, s.name())
		}
		if str(dig(s.obj, "spec", "clusterIP")) == "None" {
			headless = s.name()
			if !roles["gateway"] || !roles["exit"] {
				t.Errorf("%s: headless Service %s selects %v, want gateways and exits", s.where, s.name(), sortedKeys(roles))
			}
			if dig(s.obj, "spec", "publishNotReadyAddresses") != true {
				t.Errorf("%s: headless Service %s must publish not-ready pods (they join before they are ready)", s.where, s.name())
			}
		}
	}
	if headless == "" {
		t.Error("no headless Service for gossip seeds")
	}

	roles := map[string]int{}
	for _, c := range farmgateContainers(objs) {
		if len(c.args) == 0 {
			t.Errorf("%s: no args", c.where)
			continue
		}
		sub := c.args[0]
		roles[sub]++
		if join, ok := flagValue(c.args, "join"); !ok {
			t.Errorf("%s: no --join", c.where)
		} else if host, _, _ := net.SplitHostPort(strings.Split(join, ",")[0]); strings.Split(host, ".")[0] != headless {
			t.Errorf("%s: --join %s does not name the headless Service %s", c.where, join, headless)
		}
		for _, f := range []string{"token-file", "gossip-key-file"} {
			if v, ok := flagValue(c.args, f); !ok || !mountedFrom(c.c, v) {
				t.Errorf("%s: --%s %q is not in a mounted volume", c.where, f, v)
			}
		}
		if cfg, ok := flagValue(c.args, "config"); !ok {
			t.Errorf("%s: no --config", c.where)
		} else {
			shippedConfig(t, c.where, cfg)
			if !mountedFrom(c.c, cfg) {
				t.Errorf("%s: --config %s is not mounted", c.where, cfg)
			}
			if filepath.Base(cfg) != sub+".yaml" {
				t.Errorf("%s: farmgate %s reads %s", c.where, sub, cfg)
			}
		}
		ports := map[string]int{}
		for _, p := range list(c.c["ports"]) {
			n, _ := strconv.Atoi(str(p["containerPort"]))
			ports[str(p["name"])] = n
		}
		switch sub {
		case "gateway":
			admin, _ := flagValue(c.args, "admin")
			host, port, err := net.SplitHostPort(admin)
			if err != nil || host != "0.0.0.0" {
				t.Errorf("%s: --admin %q: want 0.0.0.0:PORT so the kubelet can probe it", c.where, admin)
			}
			if strconv.Itoa(ports["admin"]) != port {
				t.Errorf("%s: container port \"admin\" is %d, --admin listens on %s", c.where, ports["admin"], admin)
			}
			for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				if got := str(dig(c.c, probe, "httpGet", "path")); got != path {
					t.Errorf("%s: %s path %q, want %s", c.where, probe, got, path)
				}
				if got := str(dig(c.c, probe, "httpGet", "port")); got != "admin" && got != port {
					t.Errorf("%s: %s port %q, want the admin port", c.where, probe, got)
				}
			}
		case "exit":
			if dig(c.c, "readinessProbe") == nil || dig(c.c, "livenessProbe") == nil {
				t.Errorf("%s: exit without probes", c.where)
			}
		}
	}
	if roles["gateway"] == 0 || roles["exit"] == 0 {
		t.Errorf("want gateway and exit workloads, got %v", roles)
	}
	for _, d := range byKind(objs, "DaemonSet") {
		spec := dig(d.obj, "spec", "template", "spec")
		if dig(spec, "hostNetwork") != true {
			t.Errorf("%s: DaemonSet %s: exits need hostNetwork: true (egress IPs are the node's)", d.where, d.name())
		}
		if got := str(dig(spec, "dnsPolicy")); got != "ClusterFirstWithHostNet" {
			t.Errorf("%s: dnsPolicy %q: want ClusterFirstWithHostNet to resolve the gossip Service", d.where, got)
		}
	}
	if len(byKind(objs, "Deployment")) == 0 || len(byKind(objs, "DaemonSet")) == 0 {
		t.Error("want a gateway Deployment and an exit DaemonSet")
	}
}

// mountedFrom says whether path lies under one of the container's mounts.
func mountedFrom(c map[string]any, path string) bool {
	for _, m := range list(c["volumeMounts"]) {
		mp := strings.TrimSuffix(str(m["mountPath"]), "/")
		if mp != "" && strings.HasPrefix(path, mp+"/") {
			return true
		}
	}
	return false
}

// kustomization is the part of kustomization.yaml the tests read.
type kustomization struct {
	Resources       []string `yaml:"resources"`
	SecretGenerator []struct {
		Name  string   `yaml:"name"`
		Files []string `yaml:"files"`
	} `yaml:"secretGenerator"`
}

func loadKustomization(t *testing.T) kustomization {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

// generatedSecrets returns the keys of each Secret the kustomization
// generates, checking that their files are kept out of git: only
// secrets/.gitignore, which ignores everything else, is in the repository.
func generatedSecrets(t *testing.T) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, g := range loadKustomization(t).SecretGenerator {
		keys := map[string]string{}
		for _, f := range g.Files {
			key, path, ok := strings.Cut(f, "=")
			if !ok {
				key, path = filepath.Base(f), f
			}
			if filepath.Dir(path) != "secrets" {
				t.Errorf("kustomization: secret file %s: want it under secrets/, which git ignores", path)
			}
			keys[key] = ""
		}
		out[g.Name] = keys
	}
	ignore, err := os.ReadFile(filepath.Join(k8sDir, "secrets", ".gitignore"))
	if err != nil || !regexp.MustCompile(`(?m)^\*$`).Match(ignore) {
		t.Errorf("deploy/kubernetes/secrets/.gitignore must ignore everything (%v)", err)
	}
	if out, err := exec.Command("git", "-C", repoRoot, "ls-files", "deploy/kubernetes/secrets").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if f != "deploy/kubernetes/secrets/.gitignore" {
				t.Errorf("a secret is committed: %s", f)
			}
		}
	}
	return out
}

func TestKubernetesKustomizationListsEveryManifest(t *testing.T) {
	k := loadKustomization(t)
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	var want []string
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" {
			want = append(want, b)
		}
	}
	got := append([]string(nil), k.Resources...)
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("kustomization resources %v, want every manifest %v", got, want)
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl not installed: skipping `kubectl kustomize`")
	}
	// As shipped, without the secret files, it refuses: nothing applies.
	if out, err := exec.Command("kubectl", "kustomize", k8sDir).CombinedOutput(); err == nil {
		t.Errorf("kubectl kustomize without the secret files succeeded:\n%s", firstLines(out, 20))
	}
	// With them, as the README has the operator make them, the pods mount
	// the generated Secret.
	dir := filepath.Join(t.TempDir(), "kubernetes")
	if out, err := exec.Command("cp", "-r", k8sDir, dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	for _, g := range k.SecretGenerator {
		for _, f := range g.Files {
			_, path, ok := strings.Cut(f, "=")
			if !ok {
				path = f
			}
			if err := os.WriteFile(filepath.Join(dir, path), []byte("test-"+filepath.Base(path)), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := exec.Command("kubectl", "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	dec := yaml.NewDecoder(bytes.NewReader(out))
	secretNames := map[string]bool{}
	var used []string
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			break
		}
		o := k8sObject{obj: m}
		if o.kind() == "Secret" {
			secretNames[o.name()] = true
			if len(strMap(dig(m, "data"))) != 4 {
				t.Errorf("generated Secret %s has keys %v, want 4", o.name(), sortedKeys(strMap(dig(m, "data"))))
			}
		}
		for _, v := range list(dig(m, "spec", "template", "spec", "volumes")) {
			if name := str(dig(v, "secret", "secretName")); name != "" {
				used = append(used, name)
			}
		}
	}
	if len(secretNames) != 1 || len(used) == 0 {
		t.Fatalf("kustomize output: Secrets %v, mounted %v", sortedKeys(secretNames), used)
	}
	for _, name := range used {
		if !secretNames[name] || !strings.HasPrefix(name, "farmgate-secrets-") {
			t.Errorf("a pod mounts Secret %s, want the generated one %v", name, sortedKeys(secretNames))
		}
	}
}

// configMapYAML renders the ConfigMap that carries deploy/config/*.yaml.
func configMapYAML(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("# The example configs of deploy/config, mounted at /etc/farmgate. Generated:\n")
	b.WriteString("# edit deploy/config (through `farmgate config-example`), then\n")
	b.WriteString("#   go test ./deploy -run TestKubernetesConfigMap -update\n")
	b.WriteString("# Per-deployment settings are flags and FARMGATE_* variables in the workloads.\n")
	b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: farmgate-config\n  namespace: farmgate\n  labels:\n    app.kubernetes.io/name: farmgate\ndata:\n")
	for _, name := range []string{"exit.yaml", "gateway.yaml"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "config", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasSuffix(data, []byte("\n")) || bytes.HasSuffix(data, []byte("\n\n")) {
			t.Fatalf("deploy/config/%s must end in exactly one newline", name)
		}
		fmt.Fprintf(&b, "  %s: |\n", name)
		for _, line := range strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n") {
			if strings.TrimSpace(line) == "" {
				b.WriteString("\n")
				continue
			}
			b.WriteString("    " + line)
		}
		b.WriteString("\n")
	}
	return b.Bytes()
}

// TestKubernetesConfigMap keeps the ConfigMap equal to deploy/config.
func TestKubernetesConfigMap(t *testing.T) {
	want := configMapYAML(t)
	if *update {
		if err := os.WriteFile(configMapFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(configMapFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is not deploy/config/*.yaml: run `go test ./deploy -run TestKubernetesConfigMap -update`", rel(configMapFile))
	}
	// And it decodes to the files byte for byte.
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(got, &cm); err != nil {
		t.Fatal(err)
	}
	for name, text := range cm.Data {
		file, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "config", name))
		if err != nil {
			t.Fatal(err)
		}
		if text != string(file) {
			t.Errorf("ConfigMap key %s decodes to something else than deploy/config/%s", name, name)
		}
	}
}
