package failurelog_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/atrelay/atrelay/internal/failurelog"
)

// TestSummarises: 1,000 failures over 100 s make one first line, one summary
// per 30 s, and one recovery line.
// Mutation caught: writing a line on every failure (write := true) gives
// 1,000 "failed"/"still failing" lines; never writing summaries (write :=
// first) gives 0.
func TestSummarises(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf bytes.Buffer
		l := failurelog.New(slog.New(slog.NewTextHandler(&buf, nil)), "commit", slog.LevelWarn, 30*time.Second)
		l.Succeeded() // nothing to recover from: no line
		for range 1000 {
			l.Failed(errors.New("broker down"), "partition", 3)
			time.Sleep(100 * time.Millisecond) // the fake clock of synctest
		}
		if !l.Failing() {
			t.Fatal("Failing() = false during failures")
		}
		l.Succeeded()
		if l.Failing() {
			t.Fatal("Failing() = true after recovery")
		}
		out := buf.String()
		count := func(s string) int { return strings.Count(out, s) }
		if count(`msg="commit failed"`) != 1 || count(`msg="commit still failing"`) != 3 || count(`msg="commit recovered"`) != 1 {
			t.Fatalf("want 1 first line, 3 summaries, 1 recovery; got:\n%s", out)
		}
		if !strings.Contains(out, "failures=1000") || !strings.Contains(out, "level=WARN") || !strings.Contains(out, "partition=3") {
			t.Fatalf("lines lack counts, level or attributes:\n%s", out)
		}
		// A new run starts with a line at once.
		l.Failed(errors.New("again"))
		if strings.Count(buf.String(), `msg="commit failed"`) != 2 {
			t.Fatal("a new run of failures did not log at once")
		}
	})
}
