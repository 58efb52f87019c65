package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// curlResult is what a customer saw.
type curlResult struct {
	status  int         // final HTTP status (the CONNECT reply's when the tunnel failed)
	connect int         // the proxy's reply to CONNECT, 0 for plain HTTP
	header  http.Header // headers of the last response, or of the CONNECT reply
	all     http.Header // headers of every response, the CONNECT reply's included
	body    string
	exit    int // curl's exit code
}

func needCurl(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is required under CI")
		}
		t.Skip("curl not installed")
	}
}

// curl runs the real curl through proxy (http://user:pass@host:port).
func curl(t testing.TB, proxy, url string, extra ...string) curlResult {
	t.Helper()
	dir := t.TempDir()
	hdr := filepath.Join(dir, "h")
	body := filepath.Join(dir, "b")
	args := []string{"-s", "-k", "--max-time", "20", "-x", proxy, "-D", hdr, "-o", body,
		"-w", "%{http_code} %{http_connect}"}
	args = append(args, extra...)
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", args...).Output()
	var r curlResult
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run curl: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) == 2 {
		r.status, _ = strconv.Atoi(f[0])
		r.connect, _ = strconv.Atoi(f[1])
	}
	b, _ := os.ReadFile(body)
	r.body = string(b)
	h, _ := os.ReadFile(hdr)
	r.header = lastHeaders(string(h))
	r.all = allHeaders(string(h))
	if r.status == 0 && r.connect != 0 {
		r.status = r.connect
	}
	return r
}

// lastHeaders parses the last header block of curl's -D dump.
func lastHeaders(dump string) http.Header {
	blocks := strings.Split(strings.ReplaceAll(dump, "\r\n", "\n"), "\n\n")
	h := http.Header{}
	for i := len(blocks) - 1; i >= 0; i-- {
		b := strings.TrimSpace(blocks[i])
		if b == "" {
			continue
		}
		lines := strings.Split(b, "\n")
		for _, l := range lines[1:] {
			k, v, ok := strings.Cut(l, ":")
			if ok {
				h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		break
	}
	return h
}

// allHeaders parses every header block (CONNECT reply and response).
func allHeaders(dump string) http.Header {
	h := http.Header{}
	for _, l := range strings.Split(strings.ReplaceAll(dump, "\r\n", "\n"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "HTTP/") {
			h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
	return h
}
