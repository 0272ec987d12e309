package relay

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/pipeline"
)

// Tracer traces atrelay's Kafka records with the OpenTelemetry messaging
// conventions for Kafka (semantic conventions v1.43; kotel's tracer emits
// the names of v1.18). Its hooks, installed on a Kafka client
// (kgo.WithHooks), give each fetched record a receive span, "poll
// <topic>", from its fetch to its poll, a child of the record's W3C trace
// context (its traceparent header), and each produced record (a DLQ copy)
// a send span, "send <topic>", in the context the record was produced in,
// whose trace context goes into the record's headers through the
// propagator. The relay (Config.Tracer) gives each record its process
// span, "process <topic>", a child of its receive span, from the start of
// its processing to its settlement.
//
// The record's key (the visitor id, in atrelay's topics) is recorded only
// with TracerOptions.RecordMessageKey. A Tracer is safe for concurrent use.
type Tracer struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	group      attribute.KeyValue
	recordKey  bool
	topics     sync.Map // topic -> *topicSpans
}

var (
	_ kgo.HookFetchRecordBuffered     = (*Tracer)(nil)
	_ kgo.HookFetchRecordUnbuffered   = (*Tracer)(nil)
	_ kgo.HookProduceRecordBuffered   = (*Tracer)(nil)
	_ kgo.HookProduceRecordUnbuffered = (*Tracer)(nil)
)

// TracerOptions shape a Tracer.
type TracerOptions struct {
	// Group is the consumer group, recorded on receive and process spans
	// (messaging.consumer.group.name).
	Group string
	// Propagator reads a fetched record's trace context from its headers,
	// and writes a produced record's; nil means propagation.TraceContext.
	// atrelay passes dlq.Propagator, which writes under atrelay.* so that a
	// DLQ copy keeps its original traceparent.
	Propagator propagation.TextMapPropagator
	// RecordMessageKey records each record's key, when it is valid UTF-8,
	// as messaging.kafka.message.key (telemetry.record_message_key).
	RecordMessageKey bool
}

// ScopeName is the instrumentation scope of the Kafka spans.
const ScopeName = "github.com/atrelay/atrelay/internal/relay"

// NewTracer returns a Tracer creating its spans with tp.
func NewTracer(tp trace.TracerProvider, o TracerOptions) *Tracer {
	if o.Propagator == nil {
		o.Propagator = propagation.TraceContext{}
	}
	t := &Tracer{
		tracer:     tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		propagator: o.Propagator,
		recordKey:  o.RecordMessageKey,
	}
	if o.Group != "" {
		t.group = semconv.MessagingConsumerGroupName(o.Group)
	}
	return t
}

// topicSpans are what a topic's spans share, built once per topic.
type topicSpans struct {
	poll, process, send string
	destination         attribute.KeyValue
}

func (t *Tracer) topic(name string) *topicSpans {
	if ts, ok := t.topics.Load(name); ok {
		return ts.(*topicSpans)
	}
	ts, _ := t.topics.LoadOrStore(name, &topicSpans{
		poll: "poll " + name, process: "process " + name, send: "send " + name,
		destination: semconv.MessagingDestinationName(name),
	})
	return ts.(*topicSpans)
}

var (
	opPoll    = semconv.MessagingOperationName("poll")
	opProcess = semconv.MessagingOperationName("process")
	opSend    = semconv.MessagingOperationName("send")
)

// consumerAttrs are the attributes of a fetched record's receive and
// process spans.
func (t *Tracer) consumerAttrs(r *kgo.Record, ts *topicSpans, name, typ attribute.KeyValue) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs, semconv.MessagingSystemKafka, name, typ, ts.destination,
		semconv.MessagingDestinationPartitionID(strconv.Itoa(int(r.Partition))),
		semconv.MessagingKafkaOffset(int(r.Offset)))
	if t.group.Valid() {
		attrs = append(attrs, t.group)
	}
	return t.keyAttrs(r, attrs)
}

// keyAttrs adds the key, when it is recorded, and the tombstone flag.
func (t *Tracer) keyAttrs(r *kgo.Record, attrs []attribute.KeyValue) []attribute.KeyValue {
	if t.recordKey && r.Key != nil && utf8.Valid(r.Key) {
		attrs = append(attrs, semconv.MessagingKafkaMessageKey(string(r.Key)))
	}
	if r.Key != nil && r.Value == nil {
		attrs = append(attrs, semconv.MessagingKafkaMessageTombstone(true))
	}
	return attrs
}

// OnFetchRecordBuffered starts the record's receive span, a child of the
// trace context in its headers, and puts it in the record's Context.
func (t *Tracer) OnFetchRecordBuffered(r *kgo.Record) {
	if r.Context == nil {
		r.Context = context.Background()
	}
	ts := t.topic(r.Topic)
	ctx := t.propagator.Extract(r.Context, kotel.NewRecordCarrier(r))
	r.Context, _ = t.tracer.Start(ctx, ts.poll, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(t.consumerAttrs(r, ts, opPoll, semconv.MessagingOperationTypeReceive)...))
}

// OnFetchRecordUnbuffered ends the record's receive span: the record was
// polled, or dropped from the client's buffer.
func (t *Tracer) OnFetchRecordUnbuffered(r *kgo.Record, _ bool) {
	trace.SpanFromContext(r.Context).End()
}

// OnProduceRecordBuffered starts the record's send span in the context it
// is produced in, writes that span's trace context into its headers and
// puts it in the record's Context.
func (t *Tracer) OnProduceRecordBuffered(r *kgo.Record) {
	if r.Context == nil {
		r.Context = context.Background()
	}
	ts := t.topic(r.Topic)
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, semconv.MessagingSystemKafka, opSend, semconv.MessagingOperationTypeSend, ts.destination)
	ctx, _ := t.tracer.Start(r.Context, ts.send, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(t.keyAttrs(r, attrs)...))
	t.propagator.Inject(ctx, kotel.NewRecordCarrier(r))
	r.Context = ctx
}

// OnProduceRecordUnbuffered ends the record's send span with the partition
// and offset it was written at, or its error: error.type is the broker's
// error code (MESSAGE_TOO_LARGE, …) when there is one.
func (t *Tracer) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	span := trace.SpanFromContext(r.Context)
	defer span.End()
	if err == nil {
		span.SetAttributes(semconv.MessagingDestinationPartitionID(strconv.Itoa(int(r.Partition))),
			semconv.MessagingKafkaOffset(int(r.Offset)))
		return
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		span.SetAttributes(semconv.ErrorTypeKey.String(ke.Message))
	} else {
		span.SetAttributes(semconv.ErrorType(err))
	}
	span.SetStatus(codes.Error, err.Error())
}

// startProcess starts the record's process span, a child of the context
// the receive hook left in the record (its receive span), or else of the
// trace context in its headers.
func (t *Tracer) startProcess(r *kgo.Record) trace.Span {
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if !trace.SpanContextFromContext(ctx).IsValid() {
		ctx = t.propagator.Extract(ctx, kotel.NewRecordCarrier(r))
	}
	ts := t.topic(r.Topic)
	_, span := t.tracer.Start(ctx, ts.process, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(t.consumerAttrs(r, ts, opProcess, semconv.MessagingOperationTypeProcess)...))
	return span
}

// The attributes atrelay adds to a record's process span.
const (
	attrEventID     = attribute.Key("atrelay.event_id")
	attrIntegration = attribute.Key("atrelay.integration")
	attrOutcome     = attribute.Key("atrelay.outcome")
	attrReason      = attribute.Key("atrelay.reason")
)

// recordSpans traces each record: a process span from the record's
// processing to its settlement (Tracer.startProcess). It hooks into the
// relay at four points (start, decoded, settled, abandoned) so that the
// core says nothing about tracing; the sink links the span to each request
// that carries the record's hit (item.LinkRequest). A nil *recordSpans
// traces nothing.
type recordSpans struct {
	tracer *Tracer
}

// newRecordSpans returns nil when tracer is nil.
func newRecordSpans(tracer *Tracer) *recordSpans {
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
	it.span = s.tracer.startProcess(it.rec)
	return trace.ContextWithSpan(ctx, it.span)
}

// decoded records the event's id on the record's span.
func (s *recordSpans) decoded(it *item, ev *codec.Event) {
	if s == nil || it.span == nil || ev.EventID == "" {
		return
	}
	it.span.SetAttributes(attrEventID.String(ev.EventID))
}

// context returns ctx carrying the record's process span, for what is done
// on the record's behalf outside its worker: its DLQ write (whose send
// span is then the process span's child, in the record's trace) and its log
// lines (trace_id, span_id).
func (s *recordSpans) context(ctx context.Context, it *item) context.Context {
	if s == nil || it.span == nil {
		return ctx
	}
	return trace.ContextWithSpan(ctx, it.span)
}

// settled ends the record's span with its integration (when routed to
// one), outcome and reason; a dead-lettered record's span is an error,
// its error.type the reason.
func (s *recordSpans) settled(it *item, st pipeline.Settlement) {
	if s == nil || it.span == nil {
		return
	}
	s.end(it, st.Outcome.String(), st.Reason)
	if st.Outcome == pipeline.Rejected {
		it.span.SetAttributes(semconv.ErrorTypeKey.String(st.Reason))
		it.span.SetStatus(codes.Error, st.Reason)
	}
	it.span.End()
}

// abandoned ends the record's span as an error, outcome abandoned: the
// record was left unsettled.
func (s *recordSpans) abandoned(it *item, reason string) {
	if s == nil || it.span == nil {
		return
	}
	s.end(it, "abandoned", reason)
	it.span.SetStatus(codes.Error, "abandoned ("+reason+"): left unsettled for the partition's next owner")
	it.span.End()
}

func (s *recordSpans) end(it *item, outcome, reason string) {
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, attrOutcome.String(outcome))
	if reason != "" {
		attrs = append(attrs, attrReason.String(reason))
	}
	if it.hit.Site != nil {
		attrs = append(attrs, attrIntegration.String(it.hit.Site.Integration))
	}
	it.span.SetAttributes(attrs...)
}

// The sink tells a record of each request that carries its hit.
var _ pipeline.RequestLinker = (*item)(nil)

// LinkRequest links the record's process span to the span of a request
// that carries its hit: from the record, the request that delivered it
// (or each one that tried) is a link away.
func (it *item) LinkRequest(sc trace.SpanContext) {
	if it.span != nil && sc.IsValid() {
		it.span.AddLink(trace.Link{SpanContext: sc})
	}
}
