package stream

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHeadWaitsForAFixedLengthBody(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewWriter(rec)
	w.Header().Set("Content-Length", "5")
	w.WriteHeader(200)
	if rec.Flushed {
		t.Fatal("head with a Content-Length flushed before its body")
	}
	if _, err := io.Copy(w, strings.NewReader("hello")); err != nil {
		t.Fatal(err)
	}
	if !rec.Flushed || rec.Body.String() != "hello" {
		t.Fatalf("after the body: flushed %v, body %q; want flushed, hello", rec.Flushed, rec.Body.String())
	}
}

func TestHeadOfAStreamGoesAtOnce(t *testing.T) {
	rec := httptest.NewRecorder()
	w := NewWriter(rec)
	w.WriteHeader(200)
	if !rec.Flushed {
		t.Fatal("head without a Content-Length not flushed")
	}
}

// ReadFrom hands every read on at once: each read is written and flushed
// before the next one is asked for.
func TestReadFromFlushesEachRead(t *testing.T) {
	rec := &flushCounter{ResponseRecorder: httptest.NewRecorder()}
	w := NewWriter(rec)
	w.Header().Set("Content-Length", "6")
	w.WriteHeader(200)
	r := &lines{rec: rec, left: []string{"ab", "cd", "ef"}}
	n, err := w.ReadFrom(r)
	if err != nil || n != 6 || rec.Body.String() != "abcdef" || rec.flushes != 3 {
		t.Fatalf("ReadFrom = %d, %v; body %q after %d flushes; want 6, nil, abcdef, 3", n, err, rec.Body.String(), rec.flushes)
	}
}

type flushCounter struct {
	*httptest.ResponseRecorder
	flushes int
}

func (f *flushCounter) Flush() { f.flushes++; f.ResponseRecorder.Flush() }

// lines yields one string a read, and fails if the read before was not
// flushed yet.
type lines struct {
	rec  *flushCounter
	left []string
	sent int
}

func (l *lines) Read(p []byte) (int, error) {
	if l.rec.flushes != l.sent {
		return 0, io.ErrUnexpectedEOF
	}
	if len(l.left) == 0 {
		return 0, io.EOF
	}
	n := copy(p, l.left[0])
	l.left = l.left[1:]
	l.sent++
	return n, nil
}
