package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/internal/fixture"
)

// TestTracing: a record carrying a W3C traceparent gets a process span in
// that trace, and the collect request's span links to it (SPEC §7).
func TestTracing(t *testing.T) {
	e := newEnv(t, 1)
	ev := fixture.Generate(fixture.Options{Seed: 11, Events: 1, Apps: []string{fixture.AppNews}, SandboxShare: -1, OnlyTableEvents: true})[0]
	ev.EventName = "SUBSCRIPTION_STARTED"
	const traceID, parentID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	enc := fixture.MustEncoder("")
	e.kafka.Produce(t, &kgo.Record{Topic: e.topic, Partition: 0, Value: enc.Confluent(schemaID, &ev),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-" + traceID + "-" + parentID + "-01")}}})
	e.mu.Lock()
	e.records = append(e.records, record{partition: 0, offset: 0, eventID: ev.EventID, want: expect(&ev)})
	e.byEvent[ev.EventID] = e.records[0]
	e.mu.Unlock()

	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	opts, report := e.watchCommits()
	opts.TracerProvider = tp
	e.start(e.config(200, 5*time.Second), opts)
	ctx := waitCtx(t)
	// Committed implies settled, and a record's span ends before it settles.
	e.finish(ctx, report)

	var process, post sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch {
		case strings.HasPrefix(s.Name(), "process "):
			process = s
		case strings.HasPrefix(s.Name(), "collect "):
			post = s
		}
	}
	if process == nil || post == nil {
		t.Fatalf("spans: process %v, POST %v", process != nil, post != nil)
	}
	if got := process.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("process span trace %s, want the record's %s", got, traceID)
	}
	if got := process.Parent().SpanID().String(); got == "" || process.Parent().TraceID().String() != traceID {
		t.Errorf("process span parent %v is not in the record's trace", process.Parent())
	}
	if post.SpanKind() != trace.SpanKindInternal {
		t.Errorf("POST span kind %v", post.SpanKind())
	}
	linked := false
	for _, l := range post.Links() {
		if l.SpanContext.SpanID() == process.SpanContext().SpanID() {
			linked = true
		}
	}
	if !linked {
		t.Errorf("POST span links %v, want a link to the process span %v", post.Links(), process.SpanContext().SpanID())
	}
	var outcome string
	for _, a := range process.Attributes() {
		if a.Key == "atrelay.outcome" {
			outcome = a.Value.AsString()
		}
	}
	if outcome != "delivered" {
		t.Errorf("process span outcome %q", outcome)
	}
}
