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
	rec     *kgo.Record
	tr      *offsets.Tracker
	created time.Time  // the event's creation, for the delivery latency
	span    trace.Span // the process span, when tracing
	hit     pipeline.Hit
}

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

// process decodes one record and runs the stages; the hit then goes to the
// batcher, or the record is settled as filtered or sent to the DLQ. The event
// is decoded into the worker's scratch: once the hit is encoded, a buffered
// record keeps only its record and body, which is what bounds memory at
// max_buffered_events records.
func (r *Relay) process(it *item, sc *scratch) {
	// The record's work ends with its assignment: a decode retry (registry
	// down) of a revoked partition must not hold the worker, and the
	// partitions sharing it, until shutdown.
	ctx := it.tr.Context()
	if r.cfg.Tracer != nil {
		_, it.span = r.cfg.Tracer.WithProcessSpan(it.rec)
		// Stages see the span; cancellation still follows the assignment.
		ctx = trace.ContextWithSpan(ctx, it.span)
	}
	r.metrics.Consumed(ctx, it.rec.Topic, it.rec.Partition)
	for attempt := 0; ; attempt++ {
		err := r.cfg.Decoder.DecodeInto(ctx, it.rec.Value, &sc.ev)
		if err == nil {
			if attempt > 0 {
				r.decodeLog.Succeeded()
			}
			break
		}
		var te *codec.TransientError
		if !errors.As(err, &te) {
			r.deadLetter(it, "decode", pipeline.Settlement{Outcome: pipeline.Rejected, Reason: codecReason(err), Err: err})
			return
		}
		// The registry is down: the partition waits, nothing is dead-lettered.
		r.decodeLog.Failed(err, "partition", it.rec.Partition, "offset", it.rec.Offset, "attempt", attempt)
		if !sleep(ctx, r.backoff(attempt)) {
			r.abandon(it, endReason(it.tr))
			return
		}
	}
	it.created = sc.ev.EventCreatedAt
	it.hit.Event, it.hit.Ref, it.hit.Props = &sc.ev, it, sc.props[:0]
	err := r.cfg.Stages.Process(ctx, &it.hit)
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
