//go:build linux

package exitnode_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestForwardAnswersInOneWrite shows a response with a Content-Length
// leaves the exit in one write, head and body together: counted as the data
// segments the customer's socket received, which the kernel reports in
// TCP_INFO. (A small answer over loopback is one segment per write.)
func TestForwardAnswersInOneWrite(t *testing.T) {
	t.Parallel()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello")
	}))
	t.Cleanup(origin.Close)
	_, exit := startExit(t, testConfig())

	c := dialRaw(t, exit)
	host := strings.TrimPrefix(origin.URL, "http://")
	br := bufio.NewReader(c)
	for i := range 3 { // the first request opens the exit's connection to the origin
		before := dataSegsIn(t, c) // nothing is on its way in yet
		req := "GET " + origin.URL + "/ HTTP/1.1\r\nHost: " + host + "\r\nProxy-Authorization: Bearer " + testToken + "\r\n\r\n"
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || string(body) != "hello" || resp.ContentLength != 5 {
			t.Fatalf("request %d: body %q (Content-Length %d), %v", i, body, resp.ContentLength, err)
		}
		// The whole answer was read, so every segment of it has arrived.
		if n := dataSegsIn(t, c) - before; n != 1 {
			t.Errorf("request %d: the answer came in %d segments, want 1", i, n)
		}
	}
}

func dataSegsIn(t *testing.T, c net.Conn) uint32 {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var ti *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { ti, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		t.Fatalf("TCP_INFO: %v %v", err, ierr)
	}
	return ti.Data_segs_in
}
