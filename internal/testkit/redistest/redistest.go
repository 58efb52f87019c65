// Package redistest gives tests a real Redis: the shared one at
// 127.0.0.1:6379 under a key prefix of the test's own, or a redis-server
// of the test's own to stop, pause and restart. Without Redis a test
// skips, except under CI=true, where it fails.
package redistest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SharedAddr is the Redis the tests share (.ci/run starts it).
const SharedAddr = "127.0.0.1:6379"

// unavailable skips t, or fails it under CI=true.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true, so this fails)", msg)
	}
	t.Skipf("%s; start redis-server to run this test", msg)
}

// Shared returns a client of the shared Redis and a key prefix of this
// test's own; the keys under it are deleted at cleanup.
func Shared(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: SharedAddr, DialTimeout: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		unavailable(t, "redis at %s unreachable: %v", SharedAddr, err)
	}
	prefix := fmt.Sprintf("fg-test-%08x:", rand.Uint32())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	return rdb, prefix
}

// Server is a redis-server of a test's own, without persistence: a
// restart empties it.
type Server struct {
	t    testing.TB
	port int
	mu   sync.Mutex // guards cmd
	cmd  *exec.Cmd
}

// Start starts a redis-server on a free port; it is killed at cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "redis-server not found: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{t: t, port: port}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Restart starts the server again after Stop, on the same port, and waits
// until it answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()
	for i := 0; ; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if i > 100 {
			s.t.Fatalf("redis-server on %d did not start: %v\n%s", s.port, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (its data is gone); Restart brings it back.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	resume(s.cmd.Process) // a paused server dies too
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// Signal sends sig to the server: SIGSTOP makes it stop answering while
// holding its data and connections, SIGCONT resumes it.
func (s *Server) Signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Client returns a client of the server that gives up quickly (200ms, no
// retries), closed at cleanup.
func (s *Server) Client() redis.UniversalClient {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond, MaxRetries: -1})
	s.t.Cleanup(func() { rdb.Close() })
	return rdb
}
