package dlq_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// TestTracedWriteKeepsHeaders: through a client traced by kotel with
// dlq.Propagator, a dead-letter record's headers are the original's,
// untouched and in order (its traceparent and tracestate included),
// followed by atrelay.* headers only; atrelay.traceparent is the publish
// span's, a child of the span the write's context carries.
// Mutation caught: Propagator returning propagation.TraceContext{}, the
// propagator before (the original traceparent is overwritten with the
// publish span's).
func TestTracedWriteKeepsHeaders(t *testing.T) {
	k := testkafka.New(t)
	topic := k.Name(t, "dlq")
	k.CreateTopic(t, topic, 1)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracer := kotel.NewTracer(kotel.TracerProvider(tp), kotel.TracerPropagator(dlq.Propagator()))
	w, err := dlq.Open(ctx(t), dlq.Config{
		Topic:      topic,
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(k.Brokers()...), kgo.WithHooks(kotel.NewKotel(kotel.WithTracer(tracer)).Hooks()...)},
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	orig := []kgo.RecordHeader{
		{Key: "origin", Value: []byte("checkout")},
		{Key: "traceparent", Value: []byte("00-11111111111111111111111111111111-2222222222222222-01")},
		{Key: "tracestate", Value: []byte("vendor=abc")},
		{Key: "origin", Value: []byte("second value, same key")},
	}
	src := &kgo.Record{Topic: "events", Partition: 2, Offset: 41, Key: []byte("k"), Value: []byte("v"), Headers: slices.Clone(orig)}
	// The record's process span, as the relay passes it.
	pctx, process := tp.Tracer("test").Start(context.Background(), "events process")
	done := make(chan error, 1)
	w.Write(trace.ContextWithSpan(ctx(t), process), src, dlq.Failure{Stage: "decode", Reason: "corrupt"}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	process.End()
	if !slices.EqualFunc(src.Headers, orig, equalHeader) {
		t.Errorf("the source record's headers changed: %v", src.Headers)
	}

	got := k.ReadAll(t, topic, 1)[0]
	if len(got.Headers) < len(orig) || !slices.EqualFunc(got.Headers[:len(orig)], orig, equalHeader) {
		t.Fatalf("DLQ headers %s, want the original's first, untouched", show(got.Headers))
	}
	var atrelayParent string
	for _, h := range got.Headers[len(orig):] {
		if !strings.HasPrefix(h.Key, "atrelay.") {
			t.Errorf("added header %q is not atrelay.*", h.Key)
		}
		if h.Key == dlq.HeaderTraceParent {
			atrelayParent = string(h.Value)
		}
	}
	var publish sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == topic+" publish" {
			publish = s
		}
	}
	if publish == nil {
		t.Fatal("no publish span")
	}
	if publish.Parent().SpanID() != trace.SpanContextFromContext(pctx).SpanID() {
		t.Errorf("publish span's parent %s, want the process span %s", publish.Parent().SpanID(), process.SpanContext().SpanID())
	}
	if want := "00-" + publish.SpanContext().TraceID().String() + "-" + publish.SpanContext().SpanID().String() + "-01"; atrelayParent != want {
		t.Errorf("%s = %q, want the publish span's %q", dlq.HeaderTraceParent, atrelayParent, want)
	}
}

func equalHeader(a, b kgo.RecordHeader) bool {
	return a.Key == b.Key && string(a.Value) == string(b.Value)
}

func show(hs []kgo.RecordHeader) string {
	var b strings.Builder
	for _, h := range hs {
		b.WriteString(h.Key + "=" + string(h.Value) + " ")
	}
	return b.String()
}
