package cluster_test

import (
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"

	"github.com/farmgate/farmgate/cluster"
)

func TestMetaRoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		m    cluster.Meta
	}{
		{"gateway", gatewayMeta("gw-eu-1")},
		{"exit", exitMeta(3)},
		{"draining exit with egress", func() cluster.Meta {
			m := exitMeta(4)
			m.Draining, m.EgressCount, m.EgressHash, m.Weight, m.Capacity = true, 1000, 0xdeadbeef, 1<<20, 1<<30
			return m
		}()},
		{"unicode city", func() cluster.Meta { m := exitMeta(5); m.City = "zürich"; return m }()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := cluster.EncodeMeta(&tc.m)
			got, err := cluster.DecodeMeta(b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if got != tc.m {
				t.Fatalf("round trip: got %+v, want %+v", got, tc.m)
			}
		})
	}
}

func TestMetaSize(t *testing.T) {
	t.Parallel()
	m := exitMeta(1)
	if n := len(cluster.EncodeMeta(&m)); n > 80 {
		t.Errorf("typical exit metadata is %d bytes, want compact (≤ 80)", n)
	}
	// The largest metadata Validate accepts fits memberlist's limit.
	full := exitMeta(1)
	full.Weight, full.Capacity, full.EgressCount, full.EgressHash = 1<<31-1, 1<<31-1, 1<<31-1, 1<<32-1
	full.ID, full.City, full.Version = strings.Repeat("i", 200), strings.Repeat("c", 200), ""
	for pad := 0; ; pad++ {
		full.DC = strings.Repeat("d", pad)
		cfg := cluster.DefaultConfig()
		cfg.Keys, cfg.Meta = [][]byte{key(1)}, full
		err := cfg.Validate()
		n := len(cluster.EncodeMeta(&full))
		if err != nil {
			if n <= memberlist.MetaMaxSize {
				t.Fatalf("Validate refused %d bytes of metadata: %v", n, err)
			}
			if !strings.Contains(err.Error(), "Meta") {
				t.Fatalf("error %q names no field", err)
			}
			break
		}
		if n > memberlist.MetaMaxSize {
			t.Fatalf("Validate accepted %d bytes of metadata", n)
		}
	}
}

func TestDecodeMetaRefusesGarbage(t *testing.T) {
	t.Parallel()
	m := exitMeta(1)
	good := cluster.EncodeMeta(&m)
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"wrong version", append([]byte{9}, good[1:]...)},
		{"unknown role", append([]byte{good[0], 7}, good[2:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(append([]byte{}, good...), 0)},
		{"huge string length", []byte{1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := cluster.DecodeMeta(tc.b); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []cluster.Meta{gatewayMeta("gw"), exitMeta(1)} {
		f.Add(cluster.EncodeMeta(&m))
	}
	f.Add([]byte{1, 2, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := cluster.DecodeMeta(b)
		if err != nil {
			return
		}
		// Whatever decodes survives a re-encoding unchanged (the bytes may
		// differ: a varint can be written in more than one way).
		again, err := cluster.DecodeMeta(cluster.EncodeMeta(&m))
		if err != nil || again != m {
			t.Fatalf("re-encoding %+v gave %+v, %v", m, again, err)
		}
	})
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte{3, 0, 0})
	f.Add([]byte{3, 1, 1, 'a', 0, 0, 0, 1, 1, 4, 1, 2, 3, 4, 0})
	f.Add([]byte{3, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = cluster.DecodeState(b) // must not panic nor allocate without bound
	})
}
