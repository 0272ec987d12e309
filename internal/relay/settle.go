package relay

import (
	"context"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// settledBefore settles a record this member settled in an earlier
// assignment of its partition, one that ended before it could commit.
var settledBefore = pipeline.Settlement{Outcome: pipeline.Filtered, Reason: "already_settled"}

// deadLetter writes the record to the DLQ; it is settled only once the
// broker acknowledged the write. A write that fails is retried by the
// writer until the relay shuts down: the record, and its partition's
// commit, wait.
func (r *Relay) deadLetter(it *item, stage string, s pipeline.Settlement) {
	r.inflight.Add(1)
	f := dlq.Failure{Stage: stage, Reason: s.Reason, Err: s.Err, HTTPStatus: s.Status}
	// The write ends with the partition's assignment: a revoked or lost
	// partition's next owner dead-letters the record itself.
	r.dlq.Write(it.tr.Context(), it.rec, f, func(err error) {
		defer r.inflight.Done()
		if err != nil {
			// Only the end of the assignment (or shutdown) ends the
			// writer's retries.
			r.abandon(it, endReason(it.tr))
			return
		}
		r.log.Warn("record sent to the dead-letter topic", "stage", stage, "reason", s.Reason,
			"partition", it.rec.Partition, "offset", it.rec.Offset, "error", s.Err)
		r.settle(it, s)
	})
}

// settle marks the record settled in its tracker (refused, harmlessly, when
// its partition was revoked meanwhile) and releases it. The span ends first,
// so that a commit covering the record implies its span has ended.
func (r *Relay) settle(it *item, s pipeline.Settlement) {
	outcome := s.Outcome.String()
	if it.span != nil {
		it.span.SetAttributes(attribute.String("atrelay.outcome", outcome), attribute.String("atrelay.reason", s.Reason))
		if s.Outcome == pipeline.Rejected {
			it.span.SetStatus(codes.Error, s.Reason)
		}
		it.span.End()
	}
	it.tr.Settle(it.rec.Offset)
	r.metrics.Settled(r.deliverCtx, outcome, s.Reason, 1)
	r.release(it)
}

// abandon releases a record without settling it: its partition cannot commit
// past it, and whoever owns the partition next processes it again. Only a
// partition that moved (revoked, lost) or shutdown abandons a record.
func (r *Relay) abandon(it *item, reason string) {
	if it.span != nil {
		it.span.SetStatus(codes.Error, "abandoned ("+reason+"): left unsettled for the partition's next owner")
		it.span.End()
	}
	r.metrics.Abandoned(r.deliverCtx, reason, 1)
	r.release(it)
}

func (r *Relay) release(it *item) {
	it.rec, it.tr, it.created, it.span = nil, nil, time.Time{}, nil
	it.hit.Reset()
	r.items.Put(it)
	r.buffered.Add(-1)
	select {
	case r.space <- struct{}{}:
	default:
	}
}

// HitSpan returns the span context of the record a hit came from, or an
// invalid one when the relay is not tracing: the sink links each request's
// span to its records' spans with it.
func HitSpan(h *pipeline.Hit) trace.SpanContext {
	if it, ok := h.Ref.(*item); ok && it.span != nil {
		return it.span.SpanContext()
	}
	return trace.SpanContext{}
}

func (r *Relay) backoff(attempt int) time.Duration {
	lo, hi := r.cfg.Delivery.Backoff.Min, r.cfg.Delivery.Backoff.Max
	if lo <= 0 {
		lo = 200 * time.Millisecond
	}
	if hi < lo {
		hi = lo
	}
	d := lo << min(attempt, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
