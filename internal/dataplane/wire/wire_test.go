package wire

import (
	"net/http"
	"testing"
)

func TestRemoveHop(t *testing.T) {
	h := http.Header{
		"Connection":          {"keep-alive, X-Secret", "Upgrade"},
		"X-Secret":            {"1"},
		"Upgrade":             {"websocket"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Authorization": {"Basic eA=="},
		"Proxy-Connection":    {"keep-alive"},
		"X-Farmgate-Egress":   {"127.0.0.1"},
		"x-farmgate-debug":    {"1"},
		"Accept-Encoding":     {"br"},
		"X-Custom":            {"keep"},
	}
	if up := RemoveHop(h); up != "websocket" {
		t.Errorf("upgrade %q, want websocket", up)
	}
	if len(h) != 2 || h.Get("Accept-Encoding") != "br" || h.Get("X-Custom") != "keep" {
		t.Errorf("left %v, want only Accept-Encoding and X-Custom", h)
	}
}
