package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestLogLinesCarryTraceIDs: the CLI's logger adds trace_id and span_id to
// a line logged with a context inside a span, in both formats, after the
// line's own fields and through With; a line without a span has neither.
// Mutation caught: newLogger without telemetry.TraceHandler (no trace_id).
func TestLogLinesCarryTraceIDs(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(context.Background(), "record")
	defer span.End()
	sc := span.SpanContext()

	var out bytes.Buffer
	log, err := newLogger(&out, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.With("stage", "decode").WarnContext(ctx, "record sent to the dead-letter topic", "offset", 7)
	var line map[string]any
	if err := json.Unmarshal(out.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if line["trace_id"] != sc.TraceID().String() || line["span_id"] != sc.SpanID().String() || line["stage"] != "decode" || line["offset"] != 7.0 {
		t.Errorf("line %v: want trace_id %s, span_id %s beside its own fields", line, sc.TraceID(), sc.SpanID())
	}

	out.Reset()
	log, err = newLogger(&out, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	log.InfoContext(ctx, "in a span")
	log.InfoContext(context.Background(), "no span")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], "trace_id="+sc.TraceID().String()+" span_id="+sc.SpanID().String()) || strings.Contains(lines[1], "trace_id") {
		t.Errorf("text lines:\n%s\nwant the first only with trace_id=%s span_id=%s", out.String(), sc.TraceID(), sc.SpanID())
	}
}
