package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"regexp"
	"sync"
	"time"
)

// memberlistLog adapts memberlist's *log.Logger to slog: every line becomes
// one debug record with memberlist's own level in ml_level, so memberlist's
// chatter shows only when debugging. The few lines that mean a node of
// another farm, or of this farm set up differently, is knocking (a wrong
// label or key) are also told at warn level in plain words, at most once a
// minute each: the joining side of a label mismatch otherwise sees only
// "EOF".
type memberlistLog struct {
	log   *slog.Logger
	label string // this node's Config.Label
	now   func() time.Time

	mu     sync.Mutex           // guards warned
	warned map[string]time.Time // last warning per kind
}

// mismatchEvery is how often one kind of mismatch is warned about.
const mismatchEvery = time.Minute

func newMemberlistLogger(l *slog.Logger, label string) *log.Logger {
	return log.New(&memberlistLog{log: l.With("source", "memberlist"), label: label, now: time.Now, warned: map[string]time.Time{}}, "", 0)
}

var (
	// On the node that was contacted: memberlist drops the stream.
	badLabel = regexp.MustCompile(`(?i)unacceptable label "([^"]*)".*from=(\S+)`)
	badKey   = regexp.MustCompile(`(?i)no installed keys could decrypt the message.*from=(\S+)`)
	// On the node that contacted it: the stream closed under it.
	joinEOF = regexp.MustCompile(`(?i)failed to join (\S+): EOF$`)
)

func (w *memberlistLog) Write(p []byte) (int, error) {
	line := bytes.TrimSpace(p)
	level := "INFO"
	if len(line) > 0 && line[0] == '[' {
		if i := bytes.IndexByte(line, ']'); i > 0 {
			level = string(line[1:i])
			line = bytes.TrimSpace(line[i+1:])
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	w.mismatch(line)
	if w.log.Enabled(context.Background(), slog.LevelDebug) {
		w.log.Debug(string(line), "ml_level", level)
	}
	return len(p), nil
}

// mismatch warns about a line that says a peer is set up differently.
func (w *memberlistLog) mismatch(line []byte) {
	if m := badLabel.FindSubmatch(line); m != nil {
		w.warn("label", "gossip from a node with another cluster label refused: it belongs to another farm, or its label is wrong",
			"peer", string(m[2]), "peer_label", string(m[1]), "label", w.label)
	} else if m := badKey.FindSubmatch(line); m != nil {
		w.warn("key", "gossip from a node with another encryption key refused: it belongs to another farm, or its key file is wrong",
			"peer", string(m[1]))
	} else if m := joinEOF.FindSubmatch(line); m != nil {
		w.warn("eof", "a seed closed the connection without answering: its cluster label probably differs from this node's, or it is not a farmgate gossip address",
			"seed", string(m[1]), "label", w.label)
	}
}

func (w *memberlistLog) warn(kind, msg string, attrs ...any) {
	now := w.now()
	w.mu.Lock()
	last, seen := w.warned[kind]
	if seen && now.Sub(last) < mismatchEvery {
		w.mu.Unlock()
		return
	}
	w.warned[kind] = now
	w.mu.Unlock()
	w.log.Warn(msg, attrs...)
}
