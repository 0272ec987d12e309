package failurelog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Throttle returns a handler that passes each message (by level and text)
// at most once per period to h, and adds to the next one that passes how
// many of the same were dropped since (suppressed=N). It is for a library
// that logs on every attempt of something that fails (franz-go: "unable to
// open connection to broker" twice a second while a broker is down), whose
// lines we cannot summarise at the source.
func Throttle(h slog.Handler, period time.Duration) slog.Handler {
	return &throttle{next: h, period: period, state: &throttleState{seen: map[throttleKey]*throttleEntry{}}}
}

type throttleKey struct {
	level slog.Level
	msg   string
}

type throttleEntry struct {
	last       time.Time
	suppressed int
}

// throttleState is shared by the handlers WithAttrs and WithGroup derive,
// so that a message is throttled whatever logger wrote it.
type throttleState struct {
	mu   sync.Mutex
	seen map[throttleKey]*throttleEntry
}

type throttle struct {
	next   slog.Handler
	period time.Duration
	state  *throttleState
}

func (t *throttle) Enabled(ctx context.Context, l slog.Level) bool { return t.next.Enabled(ctx, l) }

func (t *throttle) Handle(ctx context.Context, r slog.Record) error {
	k := throttleKey{r.Level, r.Message}
	now := time.Now()
	t.state.mu.Lock()
	e := t.state.seen[k]
	if e == nil {
		e = &throttleEntry{}
		t.state.seen[k] = e
	}
	if !e.last.IsZero() && now.Sub(e.last) < t.period {
		e.suppressed++
		t.state.mu.Unlock()
		return nil
	}
	suppressed := e.suppressed
	e.last, e.suppressed = now, 0
	t.state.mu.Unlock()
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return t.next.Handle(ctx, r)
}

func (t *throttle) WithAttrs(as []slog.Attr) slog.Handler {
	return &throttle{next: t.next.WithAttrs(as), period: t.period, state: t.state}
}

func (t *throttle) WithGroup(name string) slog.Handler {
	return &throttle{next: t.next.WithGroup(name), period: t.period, state: t.state}
}
