// Package farmgate_test checks the module's layering: imports flow one way,
// down the layers below, as DESIGN.md says.
package farmgate_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/farmgate/farmgate"

// layer of each package of ours, by path inside the module: a package may
// import only packages of a lower layer. internal/ holds leaf primitives
// and test helpers, which may build on each other; the commands may build
// on each other (farmload runs the demo farm).
func layer(path string) (int, bool) {
	switch {
	case strings.HasPrefix(path, "internal/"):
		return 0, true
	case path == "pool", path == "auth":
		return 10, true
	case path == "upstream":
		return 20, true
	case path == "static", path == "cluster", path == "exitnode", path == "gateway":
		return 30, true
	case path == "gateway/admin": // the operator's view of a gateway
		return 35, true
	case path == "exitnode/exittest": // real exits for the tests of the layers below
		return 35, true
	case strings.HasPrefix(path, "cmd/"):
		return 40, true
	case path == "e2e", path == "deploy", path == "":
		return 50, true // tests of the whole
	}
	return 0, false
}

type listed struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func TestImportsFlowDownward(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p listed
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		seen++
		from := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		fromLayer, ok := layer(from)
		if !ok {
			t.Errorf("package %q has no layer: add it to layer()", from)
			continue
		}
		check := func(imports []string, what string) {
			for _, imp := range imports {
				if !strings.HasPrefix(imp, module+"/") {
					continue
				}
				to := strings.TrimPrefix(imp, module+"/")
				toLayer, ok := layer(to)
				switch {
				case !ok:
					t.Errorf("%s imports %s, which has no layer", from, to)
				case toLayer < fromLayer:
				case toLayer == fromLayer && (fromLayer == 0 || fromLayer == 40):
				default:
					t.Errorf("%s (layer %d) %s %s (layer %d): imports flow downward only", from, fromLayer, what, to, toLayer)
				}
			}
		}
		check(p.Imports, "imports")
		if fromLayer == 0 {
			// Not even a test of a primitive may pull in the layers above.
			check(p.TestImports, "imports in a test")
			check(p.XTestImports, "imports in a test")
		}
	}
	if seen < 10 {
		t.Fatalf("go list found %d packages; the check saw too little to mean anything", seen)
	}
}
