package redact_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/redact"
)

type lazyURL string

func (l lazyURL) LogValue() slog.Value { return slog.StringValue(string(l)) }

// TestHandler: no password reaches the output, whichever way it is logged.
// Mutations caught (tried): not redacting in WithAttrs, or not treating
// Stringers as dirty, leaks that row's password; checking only the message
// for dirtiness passes every attribute through unredacted.
func TestHandler(t *testing.T) {
	u, _ := url.Parse("http://user:pw-stringer@h:1")
	cause := errors.New("dial tcp: refused")
	tests := []struct {
		name string
		log  func(*slog.Logger)
	}{
		{"message", func(l *slog.Logger) { l.Info("GET http://u:pw-message@h failed") }},
		{"string", func(l *slog.Logger) { l.Info("x", "url", "http://u:pw-string@h") }},
		{"error", func(l *slog.Logger) {
			l.Warn("x", "error", fmt.Errorf("unable to GET %q: %w", "http://u:pw-error@h/x", cause))
		}},
		{"stringer", func(l *slog.Logger) { l.Info("x", "url", u) }},
		{"group", func(l *slog.Logger) { l.Info("x", slog.Group("reg", "url", "http://u:pw-group@h")) }},
		{"log valuer", func(l *slog.Logger) { l.Info("x", "url", lazyURL("http://u:pw-valuer@h")) }},
		{"with attrs", func(l *slog.Logger) { l.With("url", "http://u:pw-with@h").Info("x") }},
		{"with group", func(l *slog.Logger) { l.WithGroup("g").Info("x", "url", "http://u:pw-wgroup@h") }},
	}
	for _, format := range []string{"json", "text"} {
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				var buf bytes.Buffer
				var h slog.Handler = slog.NewJSONHandler(&buf, nil)
				if format == "text" {
					h = slog.NewTextHandler(&buf, nil)
				}
				tt.log(slog.New(redact.Handler(h)))
				if out := buf.String(); strings.Contains(out, "pw-") || !strings.Contains(out, "REDACTED@h") {
					t.Fatalf("output: %s", out)
				}
			})
		}
	}
}

// TestHandlerKeepsCleanRecords: other attributes pass through untouched.
func TestHandlerKeepsCleanRecords(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(redact.Handler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	})))
	l.Info("decode failed", "partition", 3, "mail", "a@b.c", "url", "http://h:1/x", "error", errors.New("boom"),
		"reg", "http://u:p@h", slog.Group("g", "d", time.Second))
	want := `{"level":"INFO","msg":"decode failed","partition":3,"mail":"a@b.c","url":"http://h:1/x","error":"boom","reg":"http://REDACTED@h","g":{"d":1000000000}}` + "\n"
	if buf.String() != want {
		t.Fatalf("\n got %s\nwant %s", buf.String(), want)
	}
}

type nopHandler struct{}

func (nopHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (nopHandler) Handle(context.Context, slog.Record) error { return nil }
func (h nopHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h nopHandler) WithGroup(string) slog.Handler           { return h }

// TestHandlerDoesNotAllocate: a record with nothing to redact costs no
// allocation.
// Mutation caught (tried): always rebuilding the record (no dirty check)
// allocates.
func TestHandlerDoesNotAllocate(t *testing.T) {
	h := redact.Handler(nopHandler{})
	r := slog.NewRecord(time.Now(), slog.LevelWarn, "decode: transient failure, retrying", 0)
	r.AddAttrs(slog.Int("partition", 3), slog.Int64("offset", 1200), slog.String("topic", "t"),
		slog.String("mail", "a@b.c"), slog.Duration("d", time.Second), slog.Int("a", 1), slog.Int("b", 2))
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { _ = h.Handle(ctx, r) }); n != 0 {
		t.Fatalf("%v allocations per clean record", n)
	}
}

func BenchmarkHandlerClean(b *testing.B) {
	h := redact.Handler(nopHandler{})
	r := slog.NewRecord(time.Now(), slog.LevelWarn, "decode: transient failure, retrying", 0)
	r.AddAttrs(slog.Int("partition", 3), slog.Int64("offset", 1200), slog.String("topic", "t"),
		slog.Any("error", errors.New("registry down")))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Handle(ctx, r)
	}
}
