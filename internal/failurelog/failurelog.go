// Package failurelog turns a run of repeated failures into a few log lines:
// the first failure at once, then at most one summary per period while
// failures go on, then one line when an attempt succeeds again. An outage
// of an hour writes a few hundred lines, not one per attempt, and its start
// and end are still visible at once. Failure lines stay at least a period
// apart whatever the pattern, so attempts that fail and succeed by turns
// (one broker of three down) do not flood the log either: a failure too
// soon after the last line is counted in the next one.
package failurelog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Log follows one kind of operation (commits, DLQ writes, one site's
// requests). Bind what identifies it to the logger (slog.Logger.With), so
// that Succeeded, called on every success, costs a lock and no allocation.
// It is safe for concurrent use; build it with New.
type Log struct {
	log    *slog.Logger
	what   string
	level  slog.Level
	period time.Duration

	// mu is held while a line is written, so lines come out in the order
	// of the events they report.
	mu       sync.Mutex
	failing  bool      // a failure line was written and nothing succeeded since
	since    time.Time // when the run of failures began (its first line)
	lastLine time.Time // when the last failure line was written
	n        int       // failures in no line yet
	total    int       // failures since the run began
	lastErr  error     // the last of those

	describe func() []any // extra attributes of a summary line; nil for none
}

// DefaultPeriod is the period between failure lines that atrelay uses:
// an outage shows within seconds, and writes six lines a minute.
const DefaultPeriod = 10 * time.Second

// New returns a Log writing "<what> failed", "<what>: N failures in the last
// <d>" (at level) and "<what> recovered" (at Info), with failure lines at
// least period apart. Summary and recovery lines say for how long the run
// has lasted (failing_for).
func New(log *slog.Logger, what string, level slog.Level, period time.Duration) *Log {
	return &Log{log: log, what: what, level: level, period: period}
}

// Describe makes every summary line also carry the attributes f returns at
// the time (how many records wait, for instance). Call it before use.
func (l *Log) Describe(f func() []any) *Log {
	l.describe = f
	return l
}

func (l *Log) due(now time.Time) bool {
	return l.lastLine.IsZero() || now.Sub(l.lastLine) >= l.period
}

// Failed records one failure; attrs describe it, for the first line.
func (l *Log) Failed(err error, attrs ...any) {
	l.FailedContext(context.Background(), err, attrs...)
}

// FailedContext is Failed for a failure in ctx's work (a record's, a
// request's): the line it writes, if any, is logged with ctx, so that a
// handler adding the trace context finds it.
func (l *Log) FailedContext(ctx context.Context, err error, attrs ...any) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	l.total++
	l.lastErr = err
	if !l.due(now) {
		return
	}
	if l.failing {
		l.summary(ctx, now)
		return
	}
	l.failing, l.since, l.total = true, now, l.n
	l.log.Log(ctx, l.level, l.what+" failed", append(attrs, "failures", l.n, "error", err)...)
	l.n, l.lastLine = 0, now
}

// Succeeded records one success, ending a run of failures with one line.
func (l *Log) Succeeded() {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing {
		// The failures since the last line end in this one.
		l.log.Info(l.what+" recovered", "failures", l.n, "failing_for", now.Sub(l.since).Round(time.Millisecond), "total_failures", l.total)
		l.failing, l.n, l.total = false, 0, 0
		return
	}
	// Failures too soon after the last line, and no line since.
	if l.n > 0 && l.due(now) {
		l.summary(context.Background(), now)
	}
}

// Flush writes the failures in no line yet, if any (at Close, so that they
// are not lost).
func (l *Log) Flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		l.summary(context.Background(), time.Now())
	}
}

// Failing reports whether a run of failures is going on.
func (l *Log) Failing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failing
}

// summary writes the failures in no line yet; l.mu is held and l.n > 0,
// which implies an earlier line.
func (l *Log) summary(ctx context.Context, now time.Time) {
	since := now.Sub(l.lastLine).Round(time.Second)
	attrs := []any{"failures", l.n, "last_error", l.lastErr}
	if l.failing {
		attrs = append(attrs, "failing_for", now.Sub(l.since).Round(time.Second))
	}
	if l.describe != nil {
		attrs = append(attrs, l.describe()...)
	}
	l.log.Log(ctx, l.level, fmt.Sprintf("%s: %d failures in the last %s", l.what, l.n, since), attrs...)
	l.n, l.lastLine = 0, now
}
