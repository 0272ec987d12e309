package dlq

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// writeLog turns failed DLQ writes into few lines: the first failure at
// once, then at most one summary per period while failures go on, then one
// line when a write succeeds again. A DLQ that is down for an hour, with
// thousands of records retrying, writes a few hundred lines, not one per
// attempt. Its ERROR lines are at least period apart whatever the pattern
// of failures, so writes that fail and succeed by turns (one partition of
// the topic leaderless) do not flood the log either: a failure too soon
// after the last line is counted in the next one. It is safe for concurrent
// use.
type writeLog struct {
	log    *slog.Logger
	period time.Duration

	// mu is held while a line is written, so lines come out in the order
	// of the events they report.
	mu       sync.Mutex
	failing  bool      // an ERROR line was written and no write succeeded since
	lastLine time.Time // when the last ERROR line was written
	n        int       // failures in no line yet
	lastErr  error     // of the last of those
}

func newWriteLog(log *slog.Logger, period time.Duration) *writeLog {
	return &writeLog{log: log, period: period}
}

// due reports whether an ERROR line may be written now.
func (l *writeLog) due(now time.Time) bool {
	return l.lastLine.IsZero() || now.Sub(l.lastLine) >= l.period
}

// failed records one failed write; attrs describe it, for the first line.
func (l *writeLog) failed(err error, attrs ...any) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	l.lastErr = err
	if !l.due(now) {
		return
	}
	if l.failing {
		l.summary(now)
		return
	}
	l.failing = true
	l.log.Error("dlq: write failed", append(attrs, "failed", l.n, "error", err)...)
	l.n, l.lastLine = 0, now
}

// succeeded records one acknowledged write.
func (l *writeLog) succeeded() {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing {
		// The failures since the last line end in this one, not in a
		// summary written after it.
		l.log.Info("dlq: writes succeed again", "failed", l.n)
		l.failing, l.n = false, 0
		return
	}
	// Failures too soon after the last line, and no line since.
	if l.n > 0 && l.due(now) {
		l.summary(now)
	}
}

// flush writes a summary of the failures in no line yet, if any: Close
// calls it so that they are not lost.
func (l *writeLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		l.summary(time.Now())
	}
}

// summary writes the failures in no line yet; l.mu is held and l.n > 0,
// which implies an earlier line.
func (l *writeLog) summary(now time.Time) {
	since := now.Sub(l.lastLine).Round(time.Second)
	l.log.Error(fmt.Sprintf("dlq: %d writes failed in the last %s", l.n, since), "failed", l.n, "last_error", l.lastErr)
	l.n, l.lastLine = 0, now
}
