package relay

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/internal/relay/offsets"
)

// partition is one assignment of one partition: its tracker, and a context
// that ends with the assignment (revoked, lost) or at shutdown. Requests
// and DLQ writes of its records run under that context, so that a member
// stops sending a partition's records as soon as it no longer owns it.
type partition struct {
	tr     *offsets.Tracker
	ctx    context.Context
	cancel context.CancelFunc
	reason atomic.Pointer[string] // why the assignment ended: revoked, lost

	// before holds what an earlier assignment of this partition, on this
	// member, settled without committing (nil when nothing): its records
	// are settled again at once instead of being sent twice.
	before *offsets.Settled
}

func (p *partition) ended() bool { return p.ctx.Err() != nil }

func (p *partition) settledBefore(offset int64) bool {
	return p.before != nil && p.before.Contains(offset)
}

func (p *partition) end(reason string) {
	p.reason.Store(&reason)
	p.cancel()
}

// endReason is the reason a record of p is released unsettled.
func (r *Relay) endReason(p *partition) string {
	if r.deliverCtx.Err() != nil {
		return "shutdown"
	}
	if reason := p.reason.Load(); reason != nil {
		return *reason
	}
	return "shutdown"
}

type topicPartition struct {
	topic     string
	partition int32
}

// leases holds the current assignments, and what ended assignments had
// settled but not committed.
type leases struct {
	mu      sync.Mutex
	current map[topicPartition]*partition
	ended   map[topicPartition]*offsets.Settled
}

func newLeases() *leases {
	return &leases{current: map[topicPartition]*partition{}, ended: map[topicPartition]*offsets.Settled{}}
}

func (l *leases) get(topic string, p int32) *partition {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.current[topicPartition{topic, p}]
}

func (l *leases) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.current)
}

// assigned gives every newly assigned partition a fresh tracker. A partition
// assigned again after a revoke gets a new tracker too: acknowledgements of
// the old assignment's records can never touch it.
func (r *Relay) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	for topic, parts := range assigned {
		r.book.Assign(topic, parts)
		r.parts.mu.Lock()
		for _, p := range parts {
			k := topicPartition{topic, p}
			if old := r.parts.current[k]; old != nil {
				old.end("revoked")
			}
			ctx, cancel := context.WithCancel(r.deliverCtx)
			r.parts.current[k] = &partition{tr: r.book.Tracker(topic, p), ctx: ctx, cancel: cancel, before: r.parts.ended[k]}
			delete(r.parts.ended, k)
		}
		r.parts.mu.Unlock()
		r.log.Info("partitions assigned", "topic", topic, "partitions", parts)
	}
	r.setReady(r.parts.count() > 0)
}

// revoked runs before the partitions move to another member: it flushes the
// batches, lets the partitions' in-flight records settle for a bounded time,
// commits what is settled, then ends the assignments: queued hits are
// dropped, requests in flight are cancelled, and the trackers refuse late
// acknowledgements. Records still unsettled are redelivered by the new owner.
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
					"topic", t.Topic(), "partition", t.Partition(), "pending", t.Pending(), "drain", drain.String())
				break
			}
		}
		cancel()
		r.commit(ctx)
	}
	r.endAssignments(revoked, "revoked")
	r.log.Info("partitions revoked", "partitions", revoked)
}

// lost ends the assignments at once and commits nothing: the partitions
// already belong to someone else, and a commit could only be wrong.
func (r *Relay) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	// Ended first: it reads what the trackers settled before they close.
	r.endAssignments(lost, "lost")
	for topic, parts := range lost {
		r.book.Lost(topic, parts)
	}
	if len(lost) > 0 {
		r.log.Warn("partitions lost (the group session ended); their unsettled records will be processed again, records this member already settled are not sent twice",
			"partitions", lost)
	}
}

// endAssignments ends the partitions' assignments: their trackers close,
// their requests are cancelled, their queued and batched hits are released,
// and what they settled above their last commit is remembered in case the
// partitions come back to this member.
func (r *Relay) endAssignments(parts map[string][]int32, reason string) {
	var ended []*partition
	r.parts.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			k := topicPartition{topic, p}
			part := r.parts.current[k]
			if part == nil {
				continue
			}
			delete(r.parts.current, k)
			if s := part.tr.Settled(); s != nil {
				r.parts.ended[k] = s.Merge(part.before)
			}
			ended = append(ended, part)
		}
	}
	r.parts.mu.Unlock()
	for _, part := range ended {
		part.tr.Close()
		part.end(reason)
	}
	if len(ended) > 0 && r.batcher != nil {
		r.batcher.Flush()
		r.sender.purge()
	}
	r.setReady(r.parts.count() > 0)
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
// accepted. Failures are logged once, then summarised, then the recovery.
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
			r.commitLog.Failed(err, "note", "retrying at each commit interval; nothing is lost, records may be sent again after a restart")
			return
		}
		ok := true
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					ok = false
					r.commitLog.Failed(perr, "topic", t.Topic, "partition", p.Partition)
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
		if ok {
			r.commitLog.Succeeded()
		}
		r.metrics.Commit(ctx, ok)
	})
}
