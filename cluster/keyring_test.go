package cluster_test

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/farmgate/farmgate/cluster"
)

func writeKeys(t *testing.T, path string, keys ...[]byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# gossip keys, primary first\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestKeyRotationKeepsClusterWhole(t *testing.T) {
	t.Parallel()
	oldKey, newKey := key(1), key(2)
	file := filepath.Join(t.TempDir(), "gossip.keys")
	writeKeys(t, file, oldKey)
	withFile := func(c *cluster.Config) { c.Keys, c.KeyFile = nil, file }

	p := newPool(t)
	gw := startNode(t, gatewayMeta("gw"), p, withFile)
	nodes := []*cluster.Cluster{gw}
	for i := range 3 {
		nodes = append(nodes, startNode(t, exitMeta(i), nil, withFile, joining(gw.Addr()), withEgress(exitEgress(i))))
	}
	waitFor(t, settle, "3 exits in pool", func() bool { return len(p.Exits()) == 3 })

	steps := []struct {
		name string
		keys [][]byte
	}{
		{"install the new key", [][]byte{oldKey, newKey}},
		{"make it primary", [][]byte{newKey, oldKey}},
		{"remove the old key", [][]byte{newKey}},
	}
	for _, s := range steps {
		writeKeys(t, file, s.keys...)
		for _, n := range nodes {
			if err := n.ReloadKeys(); err != nil {
				t.Fatalf("%s: ReloadKeys: %v", s.name, err)
			}
		}
		time.Sleep(600 * time.Millisecond) // a few probe rounds under the new keyring
		// A wrong keyring splits the cluster for good; a busy machine can
		// drop a node for a moment, until it refutes.
		for i, n := range nodes {
			waitFor(t, settle, fmt.Sprintf("%s: node %d sees 4 members (sees %d)", s.name, i, n.NumMembers()), func() bool { return n.NumMembers() == 4 })
		}
	}
	if err := nodes[1].UpdateMeta(func(m *cluster.Meta) { m.Weight = 5 }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settle, "weight update under the new key", func() bool {
		s, _ := status(p, "exit-0")
		return s.Weight == 5
	})

	// Only the new key opens the door now.
	late := startNode(t, exitMeta(7), nil, func(c *cluster.Config) { c.Keys = [][]byte{newKey} }, joining(gw.Addr()))
	waitFor(t, settle, "a node with the new key joins", func() bool { return len(p.Exits()) == 4 })
	stale := startNode(t, exitMeta(8), nil, func(c *cluster.Config) { c.Keys = [][]byte{oldKey} }, joining(gw.Addr()))
	time.Sleep(time.Second)
	if n := stale.NumMembers(); n != 1 {
		t.Errorf("a node with the removed key sees %d members", n)
	}
	waitFor(t, settle, "the late node sees every member", func() bool { return late.NumMembers() == 5 })

	writeKeys(t, file) // an empty file must not empty the keyring
	if err := gw.ReloadKeys(); err == nil {
		t.Error("ReloadKeys of an empty file: no error")
	}
}
