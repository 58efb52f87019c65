// Package stream passes HTTP responses on as they come, for the gateway and
// the exit, which forward absolute-form requests through goproxy.
package stream

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
)

// Writer is an http.ResponseWriter that passes a forwarded response on as
// it comes: it flushes after every write, so a body streams as the origin
// produces it (goproxy flushes only event streams and bodies whose header
// still says chunked, which net/http's client removes). It keeps Hijack for
// goproxy's WebSocket path.
type Writer struct {
	http.ResponseWriter
	rc *http.ResponseController
	// Touch, if set, runs before every write (a deadline to push on).
	Touch func()
}

// NewWriter wraps w.
func NewWriter(w http.ResponseWriter) *Writer {
	return &Writer{ResponseWriter: w, rc: http.NewResponseController(w)}
}

func (f *Writer) Write(p []byte) (int, error) {
	if f.Touch != nil {
		f.Touch()
	}
	n, err := f.ResponseWriter.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

// WriteHeader passes the response head on. A head whose body has no
// Content-Length (chunked, event streams, until close) goes out at once:
// its body may come late or never, and the customer should see the answer
// as soon as the origin gave it. With a Content-Length the head waits for
// the body's first bytes and leaves with them in one write, as with
// net/http's ReverseProxy: one write, and one wake-up of the reader, fewer
// per response.
//
// A response without a Content-Type goes on without one: net/http's server
// would guess one from the body, and a proxy adds nothing of its own.
func (f *Writer) WriteHeader(code int) {
	if h := f.Header(); h["Content-Type"] == nil {
		h["Content-Type"] = nil
	}
	f.ResponseWriter.WriteHeader(code)
	if code >= 200 && f.Header().Get("Content-Length") == "" {
		_ = f.rc.Flush()
	}
}

// ReadFrom copies a response body like Write, flushing after each read,
// through a pooled buffer: the embedded ResponseWriter hides net/http's own
// ReadFrom, so io.Copy would allocate 32 KiB for every response (at an exit
// the garbage collector had been a tenth of its CPU).
func (f *Writer) ReadFrom(r io.Reader) (n int64, err error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	for {
		m, rerr := r.Read(*bp)
		if m > 0 {
			w, werr := f.Write((*bp)[:m])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (f *Writer) Flush() { _ = f.rc.Flush() }

func (f *Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) { return f.rc.Hijack() }

func (f *Writer) Unwrap() http.ResponseWriter { return f.ResponseWriter }
