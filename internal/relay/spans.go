package relay

import (
	"context"

	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/pipeline"
)

// recordSpans traces each record: a process span from the record's
// processing to its settlement, its parent taken from the record's W3C
// traceparent header. It hooks into the relay at three points (start,
// settled, abandoned) so that the core says nothing about tracing. A nil
// *recordSpans traces nothing.
type recordSpans struct {
	tracer *kotel.Tracer
}

// newRecordSpans returns nil when tracer is nil.
func newRecordSpans(tracer *kotel.Tracer) *recordSpans {
	if tracer == nil {
		return nil
	}
	return &recordSpans{tracer: tracer}
}

// start opens the record's process span and returns ctx carrying it, so that the
// stages see it; cancellation still follows ctx.
func (s *recordSpans) start(ctx context.Context, it *item) context.Context {
	if s == nil {
		return ctx
	}
	_, it.span = s.tracer.WithProcessSpan(it.rec)
	return trace.ContextWithSpan(ctx, it.span)
}

// context returns ctx carrying the record's process span, for what is done
// on the record's behalf outside its worker: its DLQ write (whose publish
// span is then the process span's child, in the record's trace) and its log
// lines (trace_id, span_id).
func (s *recordSpans) context(ctx context.Context, it *item) context.Context {
	if s == nil || it.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, it.span)
}

// settled ends the record's span with the outcome and reason; a dead-lettered
// record's span is an error.
func (s *recordSpans) settled(it *item, st pipeline.Settlement) {
	if s == nil || it.span == nil {
		return
	}
	it.span.SetAttributes(attribute.String("atrelay.outcome", st.Outcome.String()), attribute.String("atrelay.reason", st.Reason))
	if st.Outcome == pipeline.Rejected {
		it.span.SetStatus(codes.Error, st.Reason)
	}
	it.span.End()
}

// abandoned ends the record's span as an error: the record was left unsettled.
func (s *recordSpans) abandoned(it *item, reason string) {
	if s == nil || it.span == nil {
		return
	}
	it.span.SetStatus(codes.Error, "abandoned ("+reason+"): left unsettled for the partition's next owner")
	it.span.End()
}
