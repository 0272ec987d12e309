package relay

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/internal/relay/offsets"
)

// endReason is the reason a record of tr is released unsettled: its
// partition was revoked or lost, or the relay is shutting down.
func endReason(tr *offsets.Tracker) string {
	switch cause := context.Cause(tr.Context()); {
	case errors.Is(cause, offsets.ErrLost):
		return "lost"
	case errors.Is(cause, offsets.ErrRevoked):
		return "revoked"
	}
	return "shutdown"
}

// assigned gives every newly assigned partition a fresh tracker. A partition
// assigned again after a revoke gets a new tracker too: acknowledgements of
// the old assignment's records can never touch it.
func (r *Relay) assigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	r.countRebalance(ctx, "assigned", assigned)
	for topic, parts := range assigned {
		r.book.Assign(topic, parts)
		r.log.Info("partitions assigned", "topic", topic, "partitions", parts)
	}
	r.groupLog.Succeeded()
	// A partition lost earlier kept its lag series at its last value; if
	// it went to another member, the series is no longer this member's.
	r.lagMu.Lock()
	for p := range r.hwm {
		if r.book.Tracker(r.cfg.Topic, p) == nil {
			delete(r.hwm, p)
			delete(r.done, p)
		}
	}
	r.lagMu.Unlock()
	r.setReady(r.book.Owned() > 0)
}

// revoked runs before the partitions move to another member: it flushes the
// batches, lets the partitions' in-flight records settle for a bounded time
// (min(shutdown_timeout, half the rebalance timeout), and never past the
// shutdown deadline once shutdown has begun), commits what is settled, then
// ends the assignments: queued hits are dropped, requests in flight are
// cancelled, and the trackers refuse late acknowledgements. Records still
// unsettled are redelivered by the new owner. The partitions' lag series
// go: the new owner reports them.
func (r *Relay) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	r.countRebalance(ctx, "revoked", revoked)
	var trackers []*offsets.Tracker
	for topic, parts := range revoked {
		trackers = append(trackers, r.book.Revoke(topic, parts)...)
	}
	if len(trackers) == 0 {
		return
	}
	if !r.crashed.Load() {
		r.batcher.Flush()
		// The rebalance timeout is the client's (kafka.rebalance_timeout,
		// set by kafkaconn.Options in ClientOpts; kgo's 60s otherwise):
		// the drain stays well below it so that the member is not kicked
		// out of the group while draining.
		rebalance, _ := cl.OptValue(kgo.RebalanceTimeout).(time.Duration)
		drain := min(r.cfg.Delivery.ShutdownTimeout, rebalance/2)
		dctx, cancel := context.WithTimeout(ctx, drain)
		stopping := false
		if at := r.stopAt.Load(); at != 0 {
			// Shutdown has begun: its deadline bounds this drain too. The
			// shutdown already reported what it abandons.
			stopping = true
			cancel()
			dctx, cancel = context.WithDeadline(ctx, time.Unix(0, min(at, time.Now().Add(drain).UnixNano())))
		}
		for _, t := range trackers {
			if err := t.Drained(dctx); err != nil {
				if !stopping {
					r.log.Warn("revoke: in-flight records did not settle in time; the new owner redelivers them",
						"topic", t.Topic(), "partition", t.Partition(), "pending", t.Pending(), "drain", drain.String())
				}
				break
			}
		}
		cancel()
		r.commit(ctx)
	}
	r.endAssignments(revoked, offsets.ErrRevoked)
	r.lagMu.Lock()
	for _, p := range revoked[r.cfg.Topic] {
		delete(r.hwm, p)
		delete(r.done, p)
	}
	r.lagMu.Unlock()
	r.log.Info("partitions revoked", "partitions", revoked)
}

// lost ends the assignments at once and commits nothing: the partitions
// already belong to someone else, and a commit could only be wrong. Their
// lag series stay at their last value: a loss is broker trouble, when lag
// matters most.
func (r *Relay) lost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	r.countRebalance(ctx, "lost", lost)
	r.endAssignments(lost, offsets.ErrLost)
	if len(lost) > 0 {
		r.log.Warn("partitions lost (the group session ended); their unsettled records will be processed again, records this member already settled are not sent twice",
			"partitions", lost)
	}
}

// countRebalance counts a change of kind when it moves a partition and the
// metrics count rebalances (RebalanceMetrics).
func (r *Relay) countRebalance(ctx context.Context, kind string, parts map[string][]int32) {
	m, ok := r.metrics.(RebalanceMetrics)
	if !ok {
		return
	}
	for _, ps := range parts {
		if len(ps) > 0 {
			m.Rebalance(ctx, kind)
			return
		}
	}
}

// endAssignments ends the partitions' assignments: their trackers close
// (their Context ends, which cancels their requests and DLQ writes), their
// batched and queued hits are released, and the book remembers what they
// settled above their last commit in case the partitions come back.
func (r *Relay) endAssignments(parts map[string][]int32, cause error) {
	ended := 0
	for topic, ps := range parts {
		ended += len(r.book.End(topic, ps, cause))
	}
	if ended > 0 && r.batcher != nil {
		// Hits added to the batcher during a revoke's drain, and any
		// batched hit of a lost partition, reach the queues and are
		// purged there.
		r.batcher.Flush()
		r.sender.purge()
	}
	r.setReady(r.book.Owned() > 0)
}

// commitLoop commits every commit_interval until ctx ends.
func (r *Relay) commitLoop(ctx context.Context) {
	t := time.NewTicker(r.cfg.Delivery.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.commit(ctx)
		}
	}
}

// commit sends, for every live partition, the highest offset below which
// every record is settled, with the settled offsets above it as the commit's
// metadata (metadata.go), and records per partition what the broker
// accepted. A partition whose offset has not moved is committed again when
// more records above it settled: a crash then sends fewer twice. Failures
// are logged once, then summarised, then the recovery.
func (r *Relay) commit(ctx context.Context) {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	if r.crashed.Load() {
		return
	}
	pending := r.book.Committable()
	if len(pending) == 0 {
		return
	}
	offs := make(map[string]map[int32]kgo.EpochOffset, len(pending))
	for topic, parts := range pending {
		m := make(map[int32]kgo.EpochOffset, len(parts))
		for p, o := range parts {
			m[p] = kgo.EpochOffset{Epoch: o.Epoch, Offset: o.At}
		}
		offs[topic] = m
	}
	if r.onCommit != nil {
		r.onCommit(offs)
	}
	r.cl.CommitOffsetsSync(r.withMetadata(ctx, pending), offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil && errors.Is(ctx.Err(), context.Canceled) {
			// Shutdown cut a periodic commit short: not a broker
			// failure, and the final commit (whose context only times
			// out, and is reported when it does) sends these offsets.
			return
		}
		if err != nil {
			r.metrics.Commit(ctx, false)
			r.commitLog.Failed(err, "note", "retrying at each commit interval; nothing is lost, records may be sent again after a restart")
			return
		}
		ok, tooLarge := true, false
		defer func() {
			if tooLarge {
				r.cutMetadata()
			}
		}()
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					ok = false
					tooLarge = tooLarge || errors.Is(perr, kerr.OffsetMetadataTooLarge)
					r.commitLog.Failed(perr, "topic", t.Topic, "partition", p.Partition)
					continue
				}
				o := pending[t.Topic][p.Partition]
				r.book.MarkCommitted(t.Topic, p.Partition, o)
				if t.Topic == r.cfg.Topic {
					r.lagMu.Lock()
					r.done[p.Partition] = o.At
					r.lagMu.Unlock()
				}
			}
		}
		if ok {
			r.commitLog.Succeeded()
		}
		r.metrics.Commit(ctx, ok)
	})
}
