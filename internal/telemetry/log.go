package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log line fields that tie a line to its trace.
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
)

// TraceHandler returns a slog.Handler that passes every record to h, adding
// trace_id and span_id (hex, as in a W3C traceparent) when the context it
// is logged with carries a valid span context: a line logged with
// log.WarnContext(ctx, …) in a record's or a request's context can be
// found from its trace, and the other way round. A line logged without one
// passes as is, without allocating. The fields are added after the
// record's own, inside any group that WithGroup opened. It is safe for
// concurrent use if h is.
func TraceHandler(h slog.Handler) slog.Handler { return &traceHandler{next: h} }

var _ slog.Handler = (*traceHandler)(nil)

type traceHandler struct{ next slog.Handler }

func (h *traceHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// A copy that shares nothing with the caller's record.
		r = r.Clone()
		r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()), slog.String(LogSpanID, sc.SpanID().String()))
	}
	return h.next.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{next: h.next.WithAttrs(as)}
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	return &traceHandler{next: h.next.WithGroup(name)}
}
