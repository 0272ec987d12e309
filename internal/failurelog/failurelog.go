// Package failurelog turns a run of repeated failures into a few log lines:
// the first failure at once, then at most one summary per interval while the
// failures go on, then one line when an attempt succeeds again. An outage
// that lasts an hour writes a few dozen lines, not one per attempt, and its
// start and end are still visible at once.
package failurelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Log follows one kind of operation (commits, DLQ writes, one site's
// requests). It is safe for concurrent use; the zero value is not usable,
// build it with New.
type Log struct {
	log   *slog.Logger
	what  string
	level slog.Level
	every time.Duration

	mu       sync.Mutex
	failing  bool
	since    time.Time // first failure of the current run
	failures int       // in the current run
	pending  int       // since the last line written
	lastLine time.Time
}

// New returns a Log writing "<what> failed", "<what> still failing" and
// "<what> recovered" lines at level (recovery at Info), with at most one
// summary per every.
func New(log *slog.Logger, what string, level slog.Level, every time.Duration) *Log {
	return &Log{log: log, what: what, level: level, every: every}
}

// Failed records one failure. attrs are added to the line, if one is
// written.
func (l *Log) Failed(err error, attrs ...any) {
	now := time.Now()
	l.mu.Lock()
	l.failures++
	l.pending++
	first := !l.failing
	if first {
		l.failing, l.since = true, now
	}
	write := first || now.Sub(l.lastLine) >= l.every
	n, since, failures := l.pending, l.since, l.failures
	if write {
		l.pending, l.lastLine = 0, now
	}
	l.mu.Unlock()
	if !write {
		return
	}
	if first {
		l.log.Log(context.Background(), l.level, l.what+" failed", append(attrs, "error", err)...)
		return
	}
	l.log.Log(context.Background(), l.level, l.what+" still failing",
		append(attrs, "failures", n, "failures_total", failures, "failing_for", time.Duration(now.Sub(since)).Round(time.Millisecond).String(), "last_error", err)...)
}

// Succeeded ends a run of failures, if one is going on, with one line.
func (l *Log) Succeeded(attrs ...any) {
	l.mu.Lock()
	if !l.failing {
		l.mu.Unlock()
		return
	}
	failures, since := l.failures, l.since
	l.failing, l.failures, l.pending, l.lastLine = false, 0, 0, time.Time{}
	l.mu.Unlock()
	l.log.Info(l.what+" recovered", append(attrs, "failures", failures, "failed_for", time.Since(since).Round(time.Millisecond).String())...)
}

// Failing reports whether the last attempt failed.
func (l *Log) Failing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failing
}
