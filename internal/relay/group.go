package relay

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/internal/relay/offsets"
)

// assigned gives every newly assigned partition a fresh tracker. A partition
// assigned again after a revoke gets a new tracker too: acknowledgements of
// the old assignment's records can never touch it.
func (r *Relay) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	for topic, parts := range assigned {
		r.book.Assign(topic, parts)
		r.log.Info("partitions assigned", "topic", topic, "partitions", parts)
	}
	if r.cfg.OnReady != nil {
		r.cfg.OnReady(true)
	}
}

// revoked runs before the partitions move to another member: it flushes the
// batches, lets the partitions' in-flight records settle for a bounded time,
// commits what is settled, and closes the trackers so that late
// acknowledgements are ignored. Records still unsettled are redelivered by
// the new owner.
func (r *Relay) revoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	var trackers []*offsets.Tracker
	for topic, parts := range revoked {
		trackers = append(trackers, r.book.Revoke(topic, parts)...)
	}
	if len(trackers) == 0 {
		return
	}
	if !r.crashed.Load() {
		r.batcher.Flush()
		drain := min(r.cfg.Delivery.ShutdownTimeout, r.rebalance/2)
		dctx, cancel := context.WithTimeout(ctx, drain)
		for _, t := range trackers {
			if err := t.Drained(dctx); err != nil {
				r.log.Warn("revoke: in-flight records did not settle in time; the new owner redelivers them",
					"topic", t.Topic(), "partition", t.Partition(), "pending", t.Pending(), "drain", drain)
				break
			}
		}
		cancel()
		r.commit(ctx)
	}
	for _, t := range trackers {
		t.Close()
	}
	r.log.Info("partitions revoked", "partitions", revoked)
}

// lost closes the trackers at once and commits nothing: the partitions
// already belong to someone else, and a commit could only be wrong.
func (r *Relay) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	for topic, parts := range lost {
		r.book.Lost(topic, parts)
	}
	r.log.Warn("partitions lost; their unsettled records will be redelivered", "partitions", lost)
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
// every record is settled, and records per partition what the broker
// accepted.
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
	if r.cfg.OnCommit != nil {
		r.cfg.OnCommit(offs)
	}
	r.cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			r.metrics.Commit(ctx, false)
			r.log.Warn("commit failed; retrying at the next interval", "error", err)
			return
		}
		ok := true
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					ok = false
					r.log.Warn("commit refused for a partition", "topic", t.Topic, "partition", p.Partition, "error", perr)
					continue
				}
				o := pending[t.Topic][p.Partition]
				r.book.MarkCommitted(t.Topic, p.Partition, o)
				if t.Topic == r.cfg.Kafka.Topic {
					r.lagMu.Lock()
					r.done[p.Partition] = o.At
					r.lagMu.Unlock()
				}
			}
		}
		r.metrics.Commit(ctx, ok)
	})
}
