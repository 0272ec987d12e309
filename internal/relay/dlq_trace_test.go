package relay_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// spanLog is a slog.Handler that keeps each line's message with the span
// context it was logged with.
type spanLog struct {
	mu    sync.Mutex
	lines map[string]trace.SpanContext
}

func (h *spanLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *spanLog) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines[r.Message] = trace.SpanContextFromContext(ctx)
	return nil
}
func (h *spanLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *spanLog) WithGroup(string) slog.Handler      { return h }

// TestDeadLetterKeepsHeaders: a record that cannot be decoded reaches the
// DLQ, through the service as app.Build assembles it with tracing on, with
// its headers untouched and in order, traceparent included, followed by
// atrelay.* headers only; atrelay.traceparent is in the record's own trace
// (the DLQ publish span is a child of the record's process span), and the
// "record sent to the dead-letter topic" line is logged in the record's
// span, so that it carries its trace_id.
// Mutations caught (each tried once): app.Build's tracer injecting with
// propagation.TraceContext{} (the DLQ copy's traceparent is the publish
// span's); deadLetter writing with the tracker's context alone (the
// publish span starts a new trace, and the log line has no span).
func TestDeadLetterKeepsHeaders(t *testing.T) {
	e := newEnv(t, 1)
	ev := fixture.Generate(fixture.Options{Seed: 12, Events: 1})[0]
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	orig := []kgo.RecordHeader{
		{Key: "traceparent", Value: []byte("00-" + traceID + "-00f067aa0ba902b7-01")},
		{Key: "origin", Value: []byte("checkout")},
		{Key: "atrelay.note", Value: []byte("a producer's own header with our prefix")},
	}
	e.kafka.Produce(t, &kgo.Record{Topic: e.topic, Partition: 0, Key: []byte("poison"),
		Value: fixture.MustEncoder("").Corrupt(fixture.CorruptGarbage, &ev), Headers: slices.Clone(orig)})
	e.mu.Lock()
	e.records = append(e.records, record{partition: 0, offset: 0, want: expected{reason: "dlq"}})
	e.mu.Unlock()

	rec := tracetest.NewSpanRecorder()
	logs := &spanLog{lines: map[string]trace.SpanContext{}}
	opts, report := e.watchCommits()
	opts.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	opts.Logger = slog.New(logs)
	e.start(e.config(200, 5*time.Second), opts)
	// The DLQ copy first: with no hit to wait for, finish would ask for
	// the group's offsets before the group exists.
	got := e.kafka.ReadAll(t, e.topic+".dlq", 1)[0]
	e.finish(waitCtx(t), report)

	if len(got.Headers) < len(orig) || !slices.EqualFunc(got.Headers[:len(orig)], orig, func(a, b kgo.RecordHeader) bool {
		return a.Key == b.Key && string(a.Value) == string(b.Value)
	}) {
		t.Fatalf("DLQ headers %s, want the original's %s first, untouched", showHeaders(got.Headers), showHeaders(orig))
	}
	added := map[string]string{}
	for _, h := range got.Headers[len(orig):] {
		if !strings.HasPrefix(h.Key, "atrelay.") {
			t.Errorf("added header %q is not atrelay.*", h.Key)
		}
		added[h.Key] = string(h.Value)
	}
	if added[dlq.HeaderReason] != "corrupt" || added[dlq.HeaderStage] != "decode" {
		t.Errorf("added headers %v: want reason corrupt, stage decode", added)
	}
	if p := added[dlq.HeaderTraceParent]; !strings.HasPrefix(p, "00-"+traceID+"-") {
		t.Errorf("%s = %q, want a span of the record's trace %s", dlq.HeaderTraceParent, p, traceID)
	}
	logs.mu.Lock()
	sc, ok := logs.lines["record sent to the dead-letter topic"]
	logs.mu.Unlock()
	if !ok {
		t.Fatalf("no dead-letter line")
	}
	if sc.TraceID().String() != traceID {
		t.Errorf("dead-letter line logged in trace %q, want the record's %s", sc.TraceID(), traceID)
	}
}

func showHeaders(hs []kgo.RecordHeader) string {
	parts := make([]string, len(hs))
	for i, h := range hs {
		parts[i] = h.Key + "=" + string(h.Value)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
