package e2e

import (
	"slices"
	"syscall"
	"testing"
	"time"
)

// Customers who ask for no session get rotation over the pool's exits:
// 40 sequential requests to 4 equal exits give each 5 to 15 of them, also
// after one tunnel through one exit was slow to set up (issue 16 item 8:
// with least_latency by default, such an exit got none and the fastest
// one most).
func TestUnpinnedRequestsRotateOverExits(t *testing.T) {
	t.Parallel()
	needCurl(t)
	// x1 alone is in FR, so a request for FR goes through it; for a pick
	// without a country the four are equal.
	f := startCmdFarm(t, []cmdExit{{"x1", "fr"}, {"x2", "de"}, {"x3", "de"}, {"x4", "de"}})
	target := "http://" + f.origin.HTTPAddr + "/ip"

	// One slow set-up through x1: it is stopped while the gateway waits
	// for its answer.
	x1 := f.proc("x1").cmd.Process
	if err := x1.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resume := time.AfterFunc(150*time.Millisecond, func() { x1.Signal(syscall.SIGCONT) })
	t.Cleanup(func() {
		resume.Stop()
		x1.Signal(syscall.SIGCONT)
	})
	start := time.Now()
	r := curl(t, f.proxy("demo-country-fr"), target)
	if r.status != 200 || r.header.Get("X-Farmgate-Exit") != "x1" {
		t.Fatalf("request for FR: status %d via %q (%s), want 200 via x1", r.status, r.header.Get("X-Farmgate-Exit"), r.header.Get("X-Farmgate-Error"))
	}
	t.Logf("the slow set-up through x1 took %s", time.Since(start).Round(time.Millisecond))

	const requests = 40
	got := map[string]int{}
	var order []string
	for range requests {
		r := curl(t, f.proxy("demo"), target)
		exit := r.header.Get("X-Farmgate-Exit")
		if r.status != 200 {
			t.Fatalf("status %d via %q (%s); gateway log:\n%s", r.status, exit, r.header.Get("X-Farmgate-Error"), f.gwProc.output())
		}
		got[exit]++
		order = append(order, exit)
	}
	t.Logf("%d sequential requests without a session: %v", requests, got)
	t.Logf("in order: %v", order)
	for _, id := range []string{"x1", "x2", "x3", "x4"} {
		if n := got[id]; n < 5 || n > 15 {
			t.Errorf("%s served %d of %d requests, want 5..15", id, n, requests)
		}
	}
	if ids := len(got); ids != 4 || slices.Contains(order, "") {
		t.Errorf("requests went to %v, want the 4 exits", got)
	}
}
