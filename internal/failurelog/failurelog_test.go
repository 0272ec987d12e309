package failurelog_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/atrelay/atrelay/internal/failurelog"
)

// TestLog drives Log on synctest's fake clock: time.Sleep inside
// the bubble advances that clock at once, so 100 s of failures take no real
// time and the line counts are exact.
//
// Mutations caught (each tried once): a line on every failure (drop the due
// check in Failed: 1,000 lines in "steady"); never a summary (return instead
// of l.summary: 0 summaries); resetting lastLine on recovery, as a plain
// first/summary/recovery scheme would (100 ERROR lines in "flapping");
// a recovery line that does not carry the pending count, or a flush that
// forgets it (the failure totals differ).
func TestLog(t *testing.T) {
	boom := errors.New("broker down")
	tests := []struct {
		name string
		run  func(l *failurelog.Log)

		first, summaries, recoveries int
		failed                       int    // failures reported, summed over every line
		line                         string // a line that must appear
	}{
		{
			name: "no failures, no lines",
			run: func(l *failurelog.Log) {
				for range 10 {
					l.Succeeded()
					time.Sleep(time.Second)
				}
			},
		},
		{
			name: "steady failures: first line, one summary per 30 s, recovery",
			run: func(l *failurelog.Log) {
				for range 1000 {
					l.Failed(boom, "partition", 3)
					time.Sleep(100 * time.Millisecond)
				}
				l.Succeeded()
				l.Succeeded() // a second success writes nothing
			},
			first: 1, summaries: 3, recoveries: 1, failed: 1000,
			line: `level=ERROR msg="dlq write: 300 failures in the last 30s" failures=300 last_error="broker down"`,
		},
		{
			name: "flapping: ERROR lines stay 30 s apart",
			run: func(l *failurelog.Log) {
				for range 100 {
					l.Failed(boom)
					l.Succeeded()
					time.Sleep(time.Second)
				}
				l.Flush()
			},
			// t=0, 30, 60, 90 s; the 9 failures after 90 s come out in flush.
			first: 4, summaries: 1, recoveries: 4, failed: 100,
			line: `level=ERROR msg="dlq write failed" failures=30 error="broker down"`,
		},
		{
			name: "flush reports what no line has",
			run: func(l *failurelog.Log) {
				l.Failed(boom)
				l.Failed(boom)
				time.Sleep(time.Second)
				l.Flush()
				l.Flush() // nothing left
			},
			first: 1, summaries: 1, failed: 2,
			line: `level=ERROR msg="dlq write: 1 failures in the last 1s" failures=1`,
		},
		{
			// Mutations caught: since not set at the first line (failing_for
			// would be the time since the zero time); total not counted over
			// the run (total_failures=14, the failures since the summary).
			name: "recovery and summaries say how long the run lasted",
			run: func(l *failurelog.Log) {
				for range 45 {
					l.Failed(boom)
					time.Sleep(time.Second)
				}
				l.Succeeded()
			},
			first: 1, summaries: 1, recoveries: 1, failed: 45,
			line: `level=INFO msg="dlq write recovered" failures=14 failing_for=45s total_failures=45`,
		},
	}
	failedAttr := regexp.MustCompile(`\sfailures=(\d+)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var buf bytes.Buffer
				tt.run(failurelog.New(slog.New(slog.NewTextHandler(&buf, nil)), "dlq write", slog.LevelError, 30*time.Second))
				out := buf.String()
				first := strings.Count(out, `level=ERROR msg="dlq write failed"`)
				summaries := strings.Count(out, "failures in the last")
				recoveries := strings.Count(out, `level=INFO msg="dlq write recovered"`)
				lines := strings.Count(out, "\n")
				if first != tt.first || summaries != tt.summaries || recoveries != tt.recoveries || lines != first+summaries+recoveries {
					t.Errorf("%d first lines, %d summaries, %d recoveries, %d lines; want %d, %d, %d and no other:\n%s",
						first, summaries, recoveries, lines, tt.first, tt.summaries, tt.recoveries, out)
				}
				failed := 0
				for _, m := range failedAttr.FindAllStringSubmatch(out, -1) {
					n, _ := strconv.Atoi(m[1])
					failed += n
				}
				if failed != tt.failed {
					t.Errorf("lines report %d failures, want %d:\n%s", failed, tt.failed, out)
				}
				if !strings.Contains(out, tt.line) {
					t.Errorf("no line with %q:\n%s", tt.line, out)
				}
			})
		})
	}
}

// TestDescribe: a summary line carries what Describe returns at the time
// (mutation caught: describe not called in summary).
func TestDescribe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		waiting := 0
		l := failurelog.New(slog.New(slog.NewTextHandler(&buf, nil)), "collect request", slog.LevelWarn, failurelog.DefaultPeriod).
			Describe(func() []any { return []any{"events_waiting", waiting} })
		for i := range 15 {
			waiting = 100 + i
			l.Failed(errors.New("HTTP 503"))
			time.Sleep(time.Second)
		}
		if want := `msg="collect request: 10 failures in the last 10s" failures=10 last_error="HTTP 503" failing_for=10s events_waiting=110`; !strings.Contains(buf.String(), want) {
			t.Errorf("no line with %q:\n%s", want, buf.String())
		}
	})
}

// TestThrottle: a message repeated every 500 ms for 30 s passes once per
// period, and each later line says how many were dropped in between.
// Mutations caught: no throttling (60 lines); the suppressed count not
// reset (it grows past 19); derived handlers (With) not sharing the state
// (the "other" logger's lines pass too).
func TestThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		log := slog.New(failurelog.Throttle(slog.NewTextHandler(&buf, nil), failurelog.DefaultPeriod))
		other := log.With("broker", 2)
		for i := range 60 {
			log.Warn("unable to open connection to broker", "attempt", i)
			other.Warn("unable to open connection to broker", "attempt", i)
			log.Info("a different message")
			time.Sleep(500 * time.Millisecond)
		}
		out := buf.String()
		if n := strings.Count(out, "unable to open connection"); n != 3 {
			t.Errorf("%d lines of the repeated message over 30 s, want 3 (one per 10 s):\n%s", n, out)
		}
		if n := strings.Count(out, "suppressed=39"); n != 2 {
			t.Errorf("%d lines say suppressed=39 (the other 39 of the 10 s before), want 2:\n%s", n, out)
		}
		if n := strings.Count(out, "a different message"); n != 3 {
			t.Errorf("other messages are throttled on their own: %d lines, want 3", n)
		}
	})
}

// ctxHandler records the value of ctxKey in the context of each record.
type ctxKey struct{}

type ctxHandler struct {
	slog.Handler
	got *[]any
}

func (h ctxHandler) Handle(ctx context.Context, r slog.Record) error {
	*h.got = append(*h.got, ctx.Value(ctxKey{}))
	return nil
}

// TestFailedContext: the first-failure and summary lines are logged with
// the failing work's context, where a handler finds its trace (mutation
// caught: logging with context.Background(), as Failed does).
func TestFailedContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []any
		l := failurelog.New(slog.New(ctxHandler{Handler: slog.NewTextHandler(io.Discard, nil), got: &got}), "collect request", slog.LevelWarn, failurelog.DefaultPeriod)
		ctx := context.WithValue(context.Background(), ctxKey{}, "request-1")
		for range 15 {
			l.FailedContext(ctx, errors.New("HTTP 503"))
			time.Sleep(time.Second)
		}
		if len(got) != 2 || got[0] != "request-1" || got[1] != "request-1" {
			t.Errorf("lines logged with context values %v, want the request's twice (first line, summary)", got)
		}
	})
}
