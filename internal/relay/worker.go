package relay

import (
	"errors"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/relay/offsets"
	"github.com/atrelay/atrelay/pipeline"
)

// item is one record on its way: the record, its tracker (one partition,
// one assignment), and the hit built from it. Items are pooled; an item belongs to exactly
// one goroutine at a time and is released once its record is settled or
// abandoned.
type item struct {
	// rec is the record as decoding, spans, settlement and the DLQ and
	// parking writers see it: it points at own, the item's copy (hold),
	// never at the fetched record. A fetched record's key, value and
	// header values are slices of its batch's decompressed buffer, which
	// kgo allocates per batch together with the batch's records: one
	// record kept until settlement would keep them all.
	rec *kgo.Record
	own kgo.Record
	// buf holds own's key, value and header values, hdrs its headers;
	// both keep their capacity across the item's reuses.
	buf  []byte
	hdrs []kgo.RecordHeader

	tr      *offsets.Tracker
	created time.Time  // the event's creation, for the delivery latency
	span    trace.Span // the process span, when tracing
	hit     pipeline.Hit
}

// The hit's Origin is its item: the sink links its request's span to the
// record's process span, and the relay gets the item back from the hit.
var _ pipeline.Origin = (*item)(nil)

// SpanContext returns the record's process span's context, or the zero one
// when the relay is not tracing.
func (it *item) SpanContext() trace.SpanContext {
	if it.span == nil {
		return trace.SpanContext{}
	}
	return it.span.SpanContext()
}

// maxKeptBuf is the largest copy buffer an item keeps for its next record:
// a rare large record's buffer is dropped with it rather than held by a
// pooled item.
const maxKeptBuf = 64 << 10

// hold makes the item's record a copy of rec: its metadata (topic,
// partition, offset, leader epoch, timestamp, attributes, producer id and
// epoch, and its Context, which carries its receive span when tracing),
// and its key, value and header values copied into the item's buffer, so
// that the item does not keep rec's batch alive. A nil key or value stays
// nil (a tombstone, a record without a key). Each slice is capped, so that
// appending to one cannot overwrite the next.
func (it *item) hold(rec *kgo.Record) {
	n := len(rec.Key) + len(rec.Value)
	for _, h := range rec.Headers {
		n += len(h.Value)
	}
	if cap(it.buf) < n {
		it.buf = make([]byte, 0, n)
	}
	buf := it.buf[:0]
	it.own = *rec
	it.own.Key, buf = appendCopy(buf, rec.Key)
	it.own.Value, buf = appendCopy(buf, rec.Value)
	it.own.Headers = nil
	if len(rec.Headers) > 0 {
		it.hdrs = it.hdrs[:0]
		for _, h := range rec.Headers {
			var v []byte
			v, buf = appendCopy(buf, h.Value)
			it.hdrs = append(it.hdrs, kgo.RecordHeader{Key: h.Key, Value: v})
		}
		it.own.Headers = it.hdrs[:len(it.hdrs):len(it.hdrs)]
	}
	it.rec = &it.own
}

// appendCopy appends b to buf (whose capacity must suffice, so that
// earlier copies stay where they are) and returns the copy, capped, and
// buf; a nil b is copied as nil.
func appendCopy(buf, b []byte) (cp, rest []byte) {
	if b == nil {
		return nil, buf
	}
	start := len(buf)
	buf = append(buf, b...)
	return buf[start:len(buf):len(buf)], buf
}

// drop forgets the item's record, keeping its buffers' capacity for the
// next one unless the buffer grew past maxKeptBuf.
func (it *item) drop() {
	it.rec, it.own = nil, kgo.Record{}
	clear(it.hdrs) // the header keys
	it.hdrs = it.hdrs[:0]
	if cap(it.buf) > maxKeptBuf {
		it.buf = nil
	}
}

// itemOf returns the item a hit of this relay was built from.
func itemOf(h *pipeline.Hit) *item { return h.Origin.(*item) }

// scratch is a worker's reusable decode target and property buffer: a
// record keeps neither once its hit is encoded.
type scratch struct {
	ev    codec.Event
	props []pipeline.Prop
}

// startWorkers starts the decode-and-stages workers. Records are sharded by
// partition, so each partition's records are processed in order.
func (r *Relay) startWorkers() ([]chan []*item, *sync.WaitGroup) {
	workers := make([]chan []*item, r.cfg.Workers)
	var done sync.WaitGroup
	for i := range workers {
		workers[i] = make(chan []*item, 4)
		done.Go(func() {
			var sc scratch
			for items := range workers[i] {
				for _, it := range items {
					r.process(it, &sc)
				}
			}
		})
	}
	return workers, &done
}

// process decodes one record, runs the stages, counts what they adjusted and
// encodes the hit; the hit then goes to the batcher, or the record is
// settled as filtered or sent to the DLQ. The event is decoded into the
// worker's scratch: once the hit is encoded, a buffered record keeps only its
// record and body, which is what bounds memory at max_buffered_events
// records.
func (r *Relay) process(it *item, sc *scratch) {
	// The record's work ends with its assignment: a decode retry (registry
	// down) of a revoked partition must not hold the worker, and the
	// partitions sharing it, until shutdown.
	ctx := it.tr.Context()
	ctx = r.spans.start(ctx, it)
	r.metrics.Consumed(ctx, it.rec.Topic, it.rec.Partition)
	// it.rec.Value is the item's own copy, kept until settlement: the
	// event's strings may point into it.
	if err := r.decoder.DecodeIntoShared(ctx, it.rec.Value, &sc.ev); err != nil {
		if _, ended := errors.AsType[*retryEnded](err); ended {
			r.abandon(it, endReason(it.tr))
			return
		}
		r.deadLetter(it, "decode", pipeline.Settlement{Outcome: pipeline.Rejected, Reason: codecReason(err), Err: err})
		return
	}
	it.created = sc.ev.EventCreatedAt
	r.spans.decoded(it, &sc.ev)
	it.hit.Event, it.hit.Origin, it.hit.Props = &sc.ev, it, sc.props[:0]
	rep, err := r.cfg.Stages.Process(ctx, &it.hit)
	if rep.Truncated > 0 {
		r.metrics.Adjusted(ctx, "truncated", int64(rep.Truncated))
	}
	if rep.OutOfRange > 0 {
		r.metrics.Adjusted(ctx, "out_of_range", int64(rep.OutOfRange))
	}
	if err == nil && r.cfg.Encode != nil {
		r.cfg.Encode(&it.hit)
	}
	// The body now carries everything the hit sends.
	sc.props, it.hit.Props, it.hit.Event = it.hit.Props[:0], nil, nil
	if err != nil {
		if reason, ok := pipeline.DropReason(err); ok {
			r.settle(it, pipeline.Settlement{Outcome: pipeline.Filtered, Reason: reason})
			return
		}
		r.deadLetter(it, "stages", pipeline.Settlement{Outcome: pipeline.Rejected, Reason: "stage_error", Err: err})
		return
	}
	r.batcher.Add(&it.hit)
}

// codecReason is the DLQ and metric label of a decode failure.
func codecReason(err error) string {
	var pe *codec.PermanentError
	if errors.As(err, &pe) {
		return pe.Reason()
	}
	return "decode_error"
}
