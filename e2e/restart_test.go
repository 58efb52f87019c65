package e2e

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"
)

// A SIGKILLed exit restarted on its address a second later is back in
// rotation within seconds, with no --probe-url: the gateway checks its
// exits by default, and checks that pass end the ejection the dead exit
// earned (issue 16 item 7: it was out for its whole 30 s ejection).
// Customers see no error meanwhile.
func TestRestartedExitIsBackWithoutProbeURL(t *testing.T) {
	t.Parallel()
	const (
		target   = 6 * time.Second  // the target, reported
		deadline = 15 * time.Second // asserted: generous for a busy machine
	)
	f := startCmdFarm(t, []cmdExit{{"x1", "de"}, {"x2", "de"}, {"x3", "de"}})
	page := "http://" + f.origin.HTTPAddr + "/ip"

	// One customer sends request after request.
	type record struct {
		at     time.Time
		exit   string
		status int
		err    error
	}
	var mu sync.Mutex
	var records []record
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := f.client("demo")
		for ctx.Err() == nil {
			resp, err := c.Get(page)
			r := record{at: time.Now(), err: err}
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				r.exit, r.status = resp.Header.Get("X-Farmgate-Exit"), resp.StatusCode
			}
			mu.Lock()
			records = append(records, r)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	// servedBy reports when exit id first served a request after since.
	servedBy := func(id string, since time.Time) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range records {
			if r.exit == id && r.status == 200 && r.at.After(since) {
				return r.at, true
			}
		}
		return time.Time{}, false
	}
	// waitServed waits up to d from since for exit id to serve a request,
	// and says how long after since it did.
	waitServed := func(id string, since time.Time, d time.Duration) (time.Duration, bool) {
		for time.Since(since) < d {
			if at, ok := servedBy(id, since); ok {
				return at.Sub(since), true
			}
			time.Sleep(10 * time.Millisecond)
		}
		return 0, false
	}
	if _, ok := waitServed("x2", time.Now(), 10*time.Second); !ok {
		t.Fatalf("x2 served nothing before the kill; gateway log:\n%s", f.gwProc.output())
	}

	killedAt := time.Now()
	f.kill("x2")
	// The traffic (and the checks) take it out of rotation.
	f.waitState(deadline, func(s map[string]string) bool { return s["x2"] == "ejected" || s["x2"] == "down" }, "x2 out of rotation")
	states, _ := f.states()
	t.Logf("x2 %s %s after SIGKILL", states["x2"], time.Since(killedAt).Round(time.Millisecond))
	if wait := time.Until(killedAt.Add(time.Second)); wait > 0 {
		time.Sleep(wait) // the scenario: restarted a second after it died
	}
	restartedAt := time.Now()
	f.startExit("x2")
	back, ok := waitServed("x2", restartedAt, deadline)
	cancel()
	wg.Wait()
	if !ok {
		states, _ := f.states()
		t.Fatalf("restarted x2 served no request within %s (target %s); exits %v; gateway log:\n%s", deadline, target, states, f.gwProc.output())
	}
	t.Logf("restarted x2 back in rotation %s after its restart (target %s)", back.Round(time.Millisecond), target)

	failed := 0
	for _, r := range records {
		if r.err != nil || r.status != 200 {
			failed++
			if failed <= 5 {
				t.Errorf("request at +%s from the kill: status %d, %v", r.at.Sub(killedAt).Round(time.Millisecond), r.status, r.err)
			}
		}
	}
	t.Logf("%d requests, %d failed", len(records), failed)
}
