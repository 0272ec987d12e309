package relay

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"
)

// poll fetches and tracks records until ctx ends, keeping at most
// max_buffered_events records between fetch and settlement. Each record is
// tracked before AllowRebalance (kgo.BlockRebalanceOnPoll), so a revoke
// always sees every record of the partitions it takes away.
func (r *Relay) poll(ctx context.Context, workers []chan []*item) {
	max := int64(r.cfg.Delivery.MaxBufferedEvents)
	shards := make([][]*item, len(workers))
	for {
		for r.buffered.Load() >= max {
			select {
			case <-r.space:
			case <-ctx.Done():
				return
			}
		}
		fs := r.cl.PollRecords(ctx, int(max-r.buffered.Load()))
		if fs.IsClientClosed() {
			r.cl.AllowRebalance()
			return
		}
		r.pollErrors(fs)
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			tr := r.book.Tracker(p.Topic, p.Partition)
			if tr != nil && p.Err == nil && p.HighWatermark >= 0 {
				r.observeLag(p)
			}
			if len(p.Records) == 0 {
				return
			}
			shard := int(p.Partition) % len(workers)
			for _, rec := range p.Records {
				// A record of a partition we no longer own, or one already
				// tracked, is not ours to process: its owner will.
				if tr == nil || !tr.Track(rec.Offset, rec.LeaderEpoch) {
					continue
				}
				// The item copies the record: kept until settlement,
				// kgo's record would keep its whole batch alive.
				it := r.items.Get().(*item)
				it.hold(rec)
				it.tr = tr
				r.buffered.Add(1)
				if tr.Previously(rec.Offset) {
					// This member settled the record in an earlier
					// assignment of the partition that ended before its
					// commit (lost, or a revoke whose commit failed):
					// sending it again would only duplicate it.
					r.settle(it, settledBefore)
					continue
				}
				shards[shard] = append(shards[shard], it)
			}
		})
		// Every record of this poll is tracked: rebalances may run again.
		r.cl.AllowRebalance()
		for i, s := range shards {
			if len(s) > 0 {
				workers[i] <- s
				shards[i] = make([]*item, 0, len(s))
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// pollErrors logs the errors of a poll by what failed: the group session
// (joining, syncing, heartbeating: the coordinator is unreachable or the
// session ended), or one partition's fetch. Each is logged once, then
// summarised while it goes on, then its recovery: the group's at the next
// assignment, a fetch's at the next poll without error.
func (r *Relay) pollErrors(fs kgo.Fetches) {
	failed := false
	fs.EachError(func(topic string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		if gs := (*kgo.ErrGroupSession)(nil); errors.As(err, &gs) {
			r.groupLog.Failed(gs.Err)
			return
		}
		failed = true
		r.fetchLog.Failed(err, "topic", topic, "partition", p)
	})
	if !failed {
		r.fetchLog.Succeeded()
	}
}

// observeLag records the high watermark of a partition this member owns.
// Until it commits the partition, its committed offset is where fetching
// began.
func (r *Relay) observeLag(p kgo.FetchTopicPartition) {
	r.lagMu.Lock()
	defer r.lagMu.Unlock()
	r.hwm[p.Partition] = p.HighWatermark
	if _, ok := r.done[p.Partition]; !ok && len(p.Records) > 0 {
		r.done[p.Partition] = p.Records[0].Offset
	}
}
