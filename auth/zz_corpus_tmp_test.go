package auth

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestZZCorpusTiming(t *testing.T) {
	dir := os.Getenv("CORPUS_DIR")
	if dir == "" {
		t.Skip()
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.SplitN(string(b), "\n", 2)
		v := strings.TrimSpace(lines[1])
		v = strings.TrimSuffix(strings.TrimPrefix(v, "[]byte("), ")")
		s, err := strconv.Unquote(v)
		if err != nil {
			t.Logf("%s: %v", f, err)
			continue
		}
		start := time.Now()
		done := make(chan struct{})
		go func() { ParseFileConfig([]byte(s), "f", Config{Logger: quietLogger}); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Logf("SLOW %s: %q", filepath.Base(f), s)
			continue
		}
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Logf("%s took %v: %q", filepath.Base(f), d, s)
		}
	}
}
