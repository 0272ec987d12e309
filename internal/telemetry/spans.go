package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/atrelay/atrelay/internal/failurelog"
)

// SpansPerRecord is how many spans the queue holds per buffered record:
// its receive and process spans, and its share of a collect request's span
// and attempt spans (2 when each record has a request of its own) or its
// DLQ send span, with room for a retry. A whole buffer of records settling
// between two exports (a replay) then fits in the queue.
const SpansPerRecord = 5

// spanQueueSize is the span queue's size: OTEL_BSP_MAX_QUEUE_SIZE when set,
// else SpansPerRecord per buffered record, and never below the SDK's
// default (2048).
func spanQueueSize(maxBuffered int) int {
	if n, err := strconv.Atoi(os.Getenv("OTEL_BSP_MAX_QUEUE_SIZE")); err == nil && n > 0 {
		return n
	}
	return max(SpansPerRecord*maxBuffered, sdktrace.DefaultMaxQueueSize)
}

// spanLogPeriod is the least time between two lines about dropped spans.
const spanLogPeriod = time.Minute

// errQueueFull is the failure logged for spans dropped from a full queue.
var errQueueFull = errors.New("the span queue is full: export does not keep up, spans are dropped (atrelay_telemetry_spans_dropped_total)")

// spanQueue is the tracer provider's span processor: a bounded queue in
// front of the SDK's batch span processor, which blocks instead of dropping
// when its own queue is full. The SDK's processor drops spans silently (it
// reports them only through an experimental, global meter); this queue
// drops only when it is full itself, and counts and logs every span it
// drops. Spans whose export fails are counted too (countingExporter): a span
// ended is either exported or counted.
type spanQueue struct {
	next  sdktrace.SpanProcessor
	queue chan sdktrace.ReadOnlySpan
	size  int
	flush chan chan struct{}
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once

	metrics *Metrics
	log     *failurelog.Log
	// dropped is set when a span was dropped since the last export: an
	// export is a recovery only when nothing was dropped meanwhile.
	dropped atomic.Bool
}

var _ sdktrace.SpanProcessor = (*spanQueue)(nil)

// spanBatch is the size of the batch span processor's own queue behind
// spanQueue: two export batches.
const spanBatch = 2 * sdktrace.DefaultMaxExportBatchSize

// newSpanQueue returns a processor exporting to exp through a queue of size
// spans, counting drops in m and logging them (the first at once, then at
// most one line a minute, then the recovery) to log.
func newSpanQueue(exp sdktrace.SpanExporter, size int, m *Metrics, log *slog.Logger) *spanQueue {
	q := &spanQueue{
		queue: make(chan sdktrace.ReadOnlySpan, size), size: size,
		flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		metrics: m,
		log:     failurelog.New(log, "span export", slog.LevelWarn, spanLogPeriod),
	}
	// The batch processor reads OTEL_BSP_SCHEDULE_DELAY, _EXPORT_TIMEOUT
	// and _MAX_EXPORT_BATCH_SIZE; its queue is ours.
	q.next = sdktrace.NewBatchSpanProcessor(&countingExporter{SpanExporter: exp, q: q},
		sdktrace.WithBlocking(), sdktrace.WithMaxQueueSize(spanBatch))
	go q.forward()
	return q
}

// forward hands the queued spans to the batch processor, in order, waiting
// while its queue is full.
func (q *spanQueue) forward() {
	defer close(q.done)
	for {
		select {
		case s := <-q.queue:
			q.next.OnEnd(s)
		case ack := <-q.flush:
			q.drain()
			close(ack)
		case <-q.stop:
			q.drain()
			return
		}
	}
}

// drain hands over every span queued now.
func (q *spanQueue) drain() {
	for {
		select {
		case s := <-q.queue:
			q.next.OnEnd(s)
		default:
			return
		}
	}
}

// OnStart does nothing: only ended spans are exported.
func (q *spanQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues a sampled span, or counts and logs it as dropped when the
// queue is full. It never blocks.
func (q *spanQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	select {
	case q.queue <- s:
	default:
		q.dropped.Store(true)
		q.metrics.SpansDropped(context.Background(), DropQueueFull, 1)
		q.log.Failed(errQueueFull, "reason", DropQueueFull, "queue_size", q.size)
	}
}

// ForceFlush exports every span queued before the call.
func (q *spanQueue) ForceFlush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.next.ForceFlush(ctx)
}

// Shutdown exports what is queued, within ctx, and stops.
func (q *spanQueue) Shutdown(ctx context.Context) error {
	q.once.Do(func() { close(q.stop) })
	var err error
	select {
	case <-q.done:
	case <-ctx.Done():
		// Still waiting for room in the batch processor: stopping it
		// lets the hand-over finish (it drops what comes after).
		err = ctx.Err()
	}
	return errors.Join(err, q.next.Shutdown(ctx))
}

// countingExporter counts and logs the spans of a failed export: the OTLP
// exporter has retried them already, and the batch processor drops them.
type countingExporter struct {
	sdktrace.SpanExporter
	q *spanQueue
}

func (e *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err != nil {
		e.q.metrics.SpansDropped(ctx, DropExportFailed, int64(len(spans)))
		e.q.log.Failed(fmt.Errorf("export %d spans: %w", len(spans), err), "reason", DropExportFailed)
		return err
	}
	if !e.q.dropped.Swap(false) {
		e.q.log.Succeeded()
	}
	return nil
}
