package relay

import (
	"time"

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
	// partition's next owner dead-letters the record itself. It and the
	// line below are in the record's span.
	ctx := r.spans.context(it.tr.Context(), it)
	r.dlq.Write(ctx, it.rec, f, func(err error) {
		defer r.inflight.Done()
		if err != nil {
			// Only the end of the assignment (or shutdown) ends the
			// writer's retries.
			r.abandon(it, endReason(it.tr))
			return
		}
		r.log.WarnContext(ctx, "record sent to the dead-letter topic", "stage", stage, "reason", s.Reason,
			"partition", it.rec.Partition, "offset", it.rec.Offset, "error", s.Err)
		r.settle(it, s)
	})
}

// settle marks the record settled in its tracker (refused, harmlessly, when
// its partition was revoked meanwhile) and releases it. The span ends first,
// so that a commit covering the record implies its span has ended.
func (r *Relay) settle(it *item, s pipeline.Settlement) {
	if it.tr.Context().Err() != nil {
		// The partition moved while the record was in flight (a late
		// acknowledgement): the tracker refuses it and the next owner
		// settles the record, so it is counted there, not here.
		r.abandon(it, endReason(it.tr))
		return
	}
	r.spans.settled(it, s)
	it.tr.Settle(it.rec.Offset)
	r.metrics.Settled(r.deliverCtx, s.Outcome.String(), s.Reason, 1)
	r.release(it)
}

// abandon releases a record without settling it: its partition cannot commit
// past it, and whoever owns the partition next processes it again. Only a
// partition that moved (revoked, lost) or shutdown abandons a record.
func (r *Relay) abandon(it *item, reason string) {
	r.spans.abandoned(it, reason)
	r.metrics.Abandoned(r.deliverCtx, reason, 1)
	r.release(it)
}

func (r *Relay) release(it *item) {
	it.drop()
	it.tr, it.created, it.span = nil, time.Time{}, nil
	it.hit.Reset()
	r.items.Put(it)
	r.buffered.Add(-1)
	select {
	case r.space <- struct{}{}:
	default:
	}
}
