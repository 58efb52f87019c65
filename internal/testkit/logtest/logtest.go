// Package logtest records what code under test logs, for tests that assert
// on log lines (one line per event, with its attributes).
package logtest

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Line is one logged event: its message and its attributes as strings.
type Line struct {
	Msg   string
	Attrs map[string]string
}

// Recorder is a slog.Handler that keeps every line, at every level. It is
// safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex // guards lines
	lines []Line
}

var _ slog.Handler = (*Recorder)(nil)

func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]string{}
	rec.Attrs(func(a slog.Attr) bool {
		attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, Line{Msg: rec.Message, Attrs: attrs})
	return nil
}

// WithAttrs and WithGroup keep the lines in the same Recorder; the
// attributes they add are not recorded.
func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *Recorder) WithGroup(string) slog.Handler      { return r }

// Lines returns the lines whose message is msg, in order.
func (r *Recorder) Lines(msg string) []Line {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Line
	for _, l := range r.lines {
		if l.Msg == msg {
			out = append(out, l)
		}
	}
	return out
}

// Count returns how many lines had the message msg.
func (r *Recorder) Count(msg string) int { return len(r.Lines(msg)) }

// CountPrefix returns how many lines had a message starting with prefix.
func (r *Recorder) CountPrefix(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, l := range r.lines {
		if strings.HasPrefix(l.Msg, prefix) {
			n++
		}
	}
	return n
}
