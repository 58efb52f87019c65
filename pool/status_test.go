package pool_test

import (
	"encoding/json"
	"go/parser"
	"go/token"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/pool"
)

func TestExitsJSON(t *testing.T) {
	t.Parallel()
	exits := mkExits(3, "e", "eu", "de")
	slices.Reverse(exits)
	f := newPool(t, nil, exits...)
	f.p.TunnelOpened("e-0001")
	f.p.TunnelOpened("e-0001")
	f.p.Report("e-0001", pool.OK, 40*time.Millisecond)
	for range 5 {
		f.p.Report("e-0002", pool.ExitFailed, 0)
	}
	got := f.p.Exits()
	if ids := []string{got[0].ID, got[1].ID, got[2].ID}; !slices.IsSorted(ids) {
		t.Errorf("Exits not sorted by id: %v", ids)
	}
	raw, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(raw, &objs); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"id", "dc", "pool", "country", "city", "state", "reason", "active_tunnels", "latency_ms", "ejections", "egress", "weight"} {
		if _, ok := objs[0][key]; !ok {
			t.Errorf("key %q missing from %s", key, raw)
		}
	}
	if _, ok := objs[0]["ejected_until"]; ok {
		t.Errorf("ejected_until present for a healthy exit: %v", objs[0])
	}
	e1, e2 := objs[1], objs[2]
	if e1["active_tunnels"] != 2.0 || e1["latency_ms"] != 40.0 || e1["country"] != "DE" || e1["state"] != "healthy" {
		t.Errorf("e-0001 = %v", e1)
	}
	if e2["state"] != "ejected" || e2["ejections"] != 1.0 || e2["ejected_until"] == nil || e2["reason"] == "" {
		t.Errorf("e-0002 = %v", e2)
	}
	if eg, _ := e1["egress"].([]any); len(eg) != 2 || eg[0] != "10.1.0.1" {
		t.Errorf("e-0001 egress = %v", e1["egress"])
	}
}

func TestPackageHasDocComment(t *testing.T) {
	t.Parallel()
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name.Name != "pool" || f.Doc == nil || !strings.HasPrefix(f.Doc.Text(), "Package pool ") {
		t.Error("package pool has no doc comment in doc.go")
	}
}

// OnLeave hears of every exit that stops taking new tunnels, for good, for
// a drain or for its health, and of nothing else.
func TestOnLeave(t *testing.T) {
	t.Parallel()
	f := newPool(t, nil, mkExits(5, "e", "eu", "de")...)
	var left []string
	f.p.OnLeave(func(id string) { left = append(left, id) })
	f.p.Drain("e-0000", true)
	f.p.Drain("e-0000", false)
	f.p.Remove("e-0001")
	f.p.Remove("nobody")
	f.p.Apply(nil, []string{"e-0002", "nobody"})
	f.p.Upsert(mkExits(1, "n", "eu", "de")[0])
	f.p.Report("e-0004", pool.OK, time.Millisecond)
	for range 5 {
		f.p.Report("e-0003", pool.ExitFailed, 0)
	}
	if want := []string{"e-0000", "e-0001", "e-0002", "e-0003"}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
}
