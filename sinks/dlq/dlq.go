package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"

	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/failurelog"
	"github.com/atrelay/atrelay/internal/inflight"
)

// Header names added to a dead-lettered record.
const (
	HeaderTopic      = "atrelay.source.topic"
	HeaderPartition  = "atrelay.source.partition"
	HeaderOffset     = "atrelay.source.offset"
	HeaderStage      = "atrelay.stage"
	HeaderReason     = "atrelay.reason"
	HeaderError      = "atrelay.error"
	HeaderTime       = "atrelay.time"
	HeaderHTTPStatus = "atrelay.http.status"

	// HeaderOriginalReason is set on a pointer record (HeaderReason is
	// ReasonTooLarge) to the reason the record was dead-lettered in the
	// first place, which the pointer's own reason replaces.
	HeaderOriginalReason = "atrelay.original_reason"
	// HeaderSize is set on a pointer record to the byte length of the
	// original value it leaves out, in decimal.
	HeaderSize = "atrelay.size"
	// HeaderDropped is set on a pointer record that also leaves out the
	// original headers ("headers") or the headers and the key
	// ("headers,key"), because even without its value the record was too
	// large for the topic.
	HeaderDropped = "atrelay.dropped"

	// HeaderTraceParent is atrelay's own W3C trace context on a
	// dead-letter record, when tracing is on: that of the span that
	// published it, a child of the record's process span (so in the
	// record's own trace when it came with one). The record's own
	// traceparent header is kept as it came. A tracestate goes under
	// atrelay.tracestate. See Propagator.
	HeaderTraceParent = headerPrefix + "traceparent"
)

// headerPrefix starts every header atrelay adds.
const headerPrefix = "atrelay."

// ReasonTooLarge is HeaderReason of a pointer record: the original record
// could not be written to the dead-letter topic whole because it exceeds the
// topic's max.message.bytes, so its value was left out. The source topic,
// partition and offset headers say where to find it while retention lasts.
const ReasonTooLarge = "too_large"

// Labels passed to Config.OnWriteError, besides ReasonTooLarge.
const (
	writeErrUnknownTopic = "unknown_topic"
	writeErrTimeout      = "timeout"
	writeErrOther        = "error"
)

// ErrClosed is what done receives for a write that Close ended, or that was
// started after Close.
var ErrClosed = errors.New("dlq: writer closed")

const (
	// maxErrorLen caps the error header.
	maxErrorLen = 1 << 10

	// defaultLimit is Kafka's default max.message.bytes (message.max.bytes
	// on the broker), assumed when neither the topic nor a broker says.
	defaultLimit = 1048588

	// attemptTimeout bounds one produce attempt, so that a write the broker
	// never answers fails, is logged and is retried rather than hanging.
	attemptTimeout = 30 * time.Second

	// describeTimeout bounds reading the limit in Open: a cluster that does
	// not answer must not keep the service from starting.
	describeTimeout = 10 * time.Second
)

// Failure says why a record is dead-lettered.
type Failure struct {
	Stage      string // decode, stages, deliver
	Reason     string // short label: corrupt, unknown_schema, http_400, …
	Err        error
	HTTPStatus int // the collect server's status, for delivery failures
}

// Config shapes a Writer.
type Config struct {
	// Topic is the dead-letter topic. It need not exist when Open is
	// called: writes fail, are logged and retried until it does.
	Topic string
	// ClientOpts are the connection options (seed brokers, TLS, SASL,
	// hooks). The writer adds its producer options; consumer options do not
	// belong here. A tracing hook must inject with Propagator, or it
	// overwrites the original record's traceparent.
	ClientOpts []kgo.Opt
	// Logger receives the writer's lines; nil means slog.Default().
	Logger *slog.Logger
	// OnWriteError, when set, is called for every failed produce attempt
	// with a short reason label: "too_large", "unknown_topic", "timeout" or
	// "error". It is not called when the write's context ends. It must not
	// block.
	OnWriteError func(reason string)
	// Backoff is the wait between failed attempts; unset bounds take
	// backoff's defaults.
	Backoff backoff.Config
}

// Propagator returns the W3C trace-context propagator for atrelay's Kafka
// clients' tracing hooks (relay.TracerOptions.Propagator): it extracts a record's
// context from its traceparent and tracestate headers, as the record's
// producer wrote them, and injects atrelay's own under the atrelay. prefix
// (HeaderTraceParent). A dead-letter record, the only record atrelay
// produces, so keeps its original headers untouched; the plain
// propagation.TraceContext would overwrite its traceparent.
func Propagator() propagation.TextMapPropagator { return prefixed{propagation.TraceContext{}} }

// prefixed injects its propagator's fields under headerPrefix and extracts
// them as they are.
type prefixed struct{ propagation.TextMapPropagator }

func (p prefixed) Inject(ctx context.Context, c propagation.TextMapCarrier) {
	p.TextMapPropagator.Inject(ctx, prefixCarrier{c})
}

// prefixCarrier writes each key under headerPrefix.
type prefixCarrier struct{ propagation.TextMapCarrier }

func (c prefixCarrier) Set(key, value string) { c.TextMapCarrier.Set(headerPrefix+key, value) }

// Writer produces to the dead-letter topic through a producer client of its
// own, sized to the topic's max.message.bytes: the consumer's client keeps
// the default 1 MB batch limit, under which a larger record could never be
// dead-lettered. It is safe for concurrent use.
type Writer struct {
	cl           *kgo.Client
	topic        string
	limit        atomic.Int32 // the largest record batch the topic accepts
	log          *slog.Logger
	failures     *failurelog.Log
	onWriteError func(reason string)
	backoff      backoff.Config

	writes *inflight.Group
}

// Open returns a writer to cfg.Topic with its own producer client. It reads
// the topic's max.message.bytes to size that client's batches; when the
// topic is absent or the read fails, it uses the broker's message.max.bytes
// (what a topic created later inherits) or else Kafka's default, 1048588.
// A limit changed after Open is honoured only after the next Open: a larger
// one still gives pointers, a smaller one gives MESSAGE_TOO_LARGE answers,
// which also give pointers. Open fails only when the client cannot be built.
func Open(ctx context.Context, cfg Config) (*Writer, error) {
	if cfg.Topic == "" {
		return nil, errors.New("dlq: no topic")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	w := &Writer{topic: cfg.Topic, log: log, failures: failurelog.New(log.With("topic", cfg.Topic), "dlq write", slog.LevelError, failurelog.DefaultPeriod), onWriteError: cfg.OnWriteError, backoff: cfg.Backoff}
	w.writes = inflight.New(ErrClosed)
	w.limit.Store(defaultLimit)
	opts := append(slices.Clip(cfg.ClientOpts),
		// Batches are capped by the topic's limit, which is read below with
		// this same client; the partitions, and so this function's calls,
		// come only with the first produce.
		kgo.ProducerBatchMaxBytesFn(func(string) int32 { return w.limit.Load() }),
		kgo.RecordDeliveryTimeout(attemptTimeout),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("dlq: kafka client: %w", err)
	}
	w.cl = cl
	limit, source, err := readLimit(ctx, kadm.NewClient(cl), cfg.Topic)
	w.limit.Store(limit)
	if err != nil {
		w.log.Warn("dlq: cannot read the dead-letter topic's max.message.bytes; if the topic is missing, writes fail and are retried until it exists",
			"topic", cfg.Topic, "max_message_bytes", limit, "from", source, "error", err)
	} else {
		w.log.Info("dlq: writer ready", "topic", cfg.Topic, "max_message_bytes", limit, "from", source)
	}
	return w, nil
}

// readLimit returns the largest record batch topic accepts and where that
// figure came from: "topic", "broker" or "default". The error says why the
// topic's own figure could not be read.
func readLimit(ctx context.Context, adm *kadm.Client, topic string) (int32, string, error) {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	v, err := configInt(rcs, err, topic, "max.message.bytes")
	if err == nil {
		return v, "topic", nil
	}
	topicErr := fmt.Errorf("describe topic %s: %w", topic, err)
	// A broker's own figure, static ones included, needs its id: the
	// cluster-wide resource lists dynamic overrides only.
	if md, err := adm.BrokerMetadata(ctx); err == nil && len(md.Brokers) > 0 {
		id := md.Brokers[0].NodeID
		rcs, err := adm.DescribeBrokerConfigs(ctx, id)
		if v, err := configInt(rcs, err, strconv.Itoa(int(id)), "message.max.bytes"); err == nil {
			return v, "broker", topicErr
		}
	}
	return defaultLimit, "default", topicErr
}

// configInt returns config key of resource name from a describe answer and
// its error, clamped to what kgo accepts as a batch limit.
func configInt(rcs kadm.ResourceConfigs, err error, name, key string) (int32, error) {
	if err != nil {
		return 0, err
	}
	rc, err := rcs.On(name, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return 0, err
	}
	for _, c := range rc.Configs {
		if c.Key != key || c.Value == nil {
			continue
		}
		n, err := strconv.ParseInt(*c.Value, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", key, err)
		}
		return int32(min(max(n, 512), 1<<30)), nil
	}
	return 0, fmt.Errorf("no %s in the answer", key)
}

// Close ends the writes still in flight (their done gets ErrClosed), waits
// for their done callbacks to return, and closes the writer's client. Do not
// call it from a done callback. Calls after the first do nothing.
func (w *Writer) Close() {
	if !w.writes.Close() {
		return
	}
	w.failures.Flush()
	w.cl.Close()
}

// Record returns the dead-letter copy of rec for failure f: its key, value
// and headers, followed by the atrelay.* headers. It is the whole copy
// whatever its size; Write is what turns one too large into a pointer.
func (w *Writer) Record(rec *kgo.Record, f Failure) *kgo.Record {
	return w.record(rec, f, time.Now(), whole)
}

// shape is how much of the original record a dead-letter record keeps; each
// shape keeps less than the one before.
type shape int

const (
	whole   shape = iota // key, value and headers
	pointer              // key and headers
	bare                 // key
	keyless              // nothing: the atrelay.* headers only
)

// dropped is HeaderDropped's value for s, or "" when s drops no more than
// the value.
func (s shape) dropped() string {
	switch s {
	case bare:
		return "headers"
	case keyless:
		return "headers,key"
	}
	return ""
}

func (w *Writer) record(rec *kgo.Record, f Failure, at time.Time, s shape) *kgo.Record {
	errText := ""
	if f.Err != nil {
		errText = f.Err.Error()
		if len(errText) > maxErrorLen {
			errText = errText[:maxErrorLen]
		}
	}
	reason := f.Reason
	if s != whole {
		reason = ReasonTooLarge
	}
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+11)
	if s <= pointer {
		headers = append(headers, rec.Headers...)
	}
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(f.Stage)},
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(errText)},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(at.UTC().Format(time.RFC3339Nano))},
	)
	if f.HTTPStatus != 0 {
		headers = append(headers, kgo.RecordHeader{Key: HeaderHTTPStatus, Value: strconv.AppendInt(nil, int64(f.HTTPStatus), 10)})
	}
	out := &kgo.Record{Topic: w.topic, Key: rec.Key, Value: rec.Value, Headers: headers}
	if s == whole {
		return out
	}
	out.Value = nil
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: HeaderOriginalReason, Value: []byte(f.Reason)},
		kgo.RecordHeader{Key: HeaderSize, Value: strconv.AppendInt(nil, int64(len(rec.Value)), 10)},
	)
	if d := s.dropped(); d != "" {
		out.Headers = append(out.Headers, kgo.RecordHeader{Key: HeaderDropped, Value: []byte(d)})
	}
	if s == keyless {
		out.Key = nil
	}
	return out
}

// Sizes that bound how a record encodes in a batch of its own: the v2 batch
// header is 61 bytes, the record's length, attributes, timestamp and offset
// deltas and key/value lengths at most 31 more; each header adds two varint
// lengths of at most 5 bytes. Rounded up, so that a record judged to fit
// does fit, in kgo's count and the broker's.
const (
	recordOverhead = 128
	headerOverhead = 10
)

// encodedSize overestimates the bytes r takes in a record batch of its own.
func encodedSize(r *kgo.Record) int {
	n := recordOverhead + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}

// Write produces the dead-letter copy of rec asynchronously and calls done
// once: with nil only after the broker acknowledged it, or with ctx's error
// (ErrClosed after Close) when ctx ended first. A record too large for the
// topic is written as a pointer, keeping less and less (value, then
// headers, then key) until it fits. Other failed produces are logged and
// retried with backoff until ctx ends, so a DLQ that cannot be written
// stalls the record (and its partition's commits) instead of losing it.
// rec must not change until done is called; done runs on a goroutine of the
// writer's, or before Write returns on a closed writer.
func (w *Writer) Write(ctx context.Context, rec *kgo.Record, f Failure, done func(error)) {
	at := time.Now()
	w.writes.Go(ctx, func(ctx context.Context) error { return w.write(ctx, rec, f, at) }, done)
}

// write produces rec's dead-letter copy until the broker acknowledges it or
// ctx ends.
func (w *Writer) write(ctx context.Context, rec *kgo.Record, f Failure, at time.Time) error {
	s, limit := whole, int(w.limit.Load())
	for s < keyless && encodedSize(w.record(rec, f, at, s)) > limit {
		s++
	}
	if s != whole {
		w.logPointer(ctx, rec, s, "")
	}
	for attempt := 0; ; attempt++ {
		// A fresh record each attempt: kgo keeps the first attempt's
		// context (and timestamp, partition) in the record it is given.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := w.cl.ProduceSync(actx, w.record(rec, f, at, s)).FirstErr()
		cancel()
		if err == nil {
			w.failures.Succeeded()
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		reason := writeErrReason(err)
		if w.onWriteError != nil {
			w.onWriteError(reason)
		}
		w.failures.FailedContext(ctx, err, "source_topic", rec.Topic, "partition", rec.Partition,
			"offset", rec.Offset, "reason", reason)
		if reason == ReasonTooLarge && s < keyless {
			// The topic's limit is below the one read in Open: keep less
			// and try again at once; this is not a transient failure.
			s++
			w.logPointer(ctx, rec, s, err.Error())
			continue
		}
		if !backoff.Sleep(ctx, w.backoff.Delay(attempt)) {
			return context.Cause(ctx)
		}
	}
}

// logPointer logs a pointer record in the context of the write (the
// record's span, when traced).
func (w *Writer) logPointer(ctx context.Context, rec *kgo.Record, s shape, brokerErr string) {
	attrs := []any{"topic", w.topic, "source_topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
		"value_bytes", len(rec.Value), "max_message_bytes", w.limit.Load()}
	if d := s.dropped(); d != "" {
		attrs = append(attrs, "dropped", d)
	}
	if brokerErr != "" {
		attrs = append(attrs, "error", brokerErr)
	}
	w.log.WarnContext(ctx, "dlq: record too large for the dead-letter topic; writing a pointer without its value", attrs...)
}

// writeErrReason labels a failed produce for Config.OnWriteError.
func writeErrReason(err error) string {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return ReasonTooLarge
	case errors.Is(err, kerr.UnknownTopicOrPartition), errors.Is(err, kerr.UnknownTopicID):
		return writeErrUnknownTopic
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, kerr.RequestTimedOut):
		return writeErrTimeout
	}
	return writeErrOther
}
