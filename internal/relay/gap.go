package relay

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// GapMetrics is what a Metrics may also count: the records a partition's
// committed offset pointed to that retention deleted before the group read
// them (a group stopped for longer than the topic's retention). Every
// partition assigned adds 0 first, so that the series exists.
// *telemetry.Metrics is one. It is apart from Metrics so that a Metrics
// without it still works.
type GapMetrics interface {
	OffsetGap(ctx context.Context, topic string, partition int32, missing int64)
}

// resetOffset is where a partition without a usable committed offset starts:
// its log start, or its end with StartLatest (kafka.start_from).
func (r *Relay) resetOffset() kgo.Offset {
	if r.cfg.StartLatest {
		return kgo.NewOffset().AtEnd()
	}
	return kgo.NewOffset().AtStart()
}

// gapResets are the partitions whose committed offset offsetsFetched found
// below the log start, for adjustFetchOffsets to move: both hooks run, one
// after the other, at each assignment.
type gapResets struct {
	mu    sync.Mutex
	parts map[int32]bool
}

// checkGaps, run by offsetsFetched with the newly assigned partitions'
// committed offsets (committed: only those with a commit; assigned: all),
// lists the partitions' log start offsets: a partition whose committed
// offset is below its log start (retention deleted records the group never
// read) gets one ERROR naming the topic, the partition and the count of
// records lost, is counted (GapMetrics), and is moved by adjustFetchOffsets
// to where kafka.start_from says (its log start, or its end), as a partition
// without a commit. The client alone would reset it silently: on its
// first fetch of the partition to ConsumeResetOffset, and for a partition
// it consumed before (assigned to this member again) to the log start,
// whatever start_from says.
//
// When the log start offsets cannot be listed, a WARN says that the check
// did not happen, and the client's reset applies.
func (r *Relay) checkGaps(ctx context.Context, cl *kgo.Client, assigned []int32, committed map[int32]int64) {
	m, _ := r.metrics.(GapMetrics)
	for _, p := range assigned {
		if m != nil {
			m.OffsetGap(ctx, r.cfg.Topic, p, 0) // the series exists from the first assignment
		}
	}
	if len(committed) == 0 {
		return
	}
	starts, err := kadm.NewClient(cl).ListStartOffsets(ctx, r.cfg.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		r.log.Warn("could not check the committed offsets against the partitions' log start; a committed offset below it (records deleted by retention) restarts per start_from without an error line",
			"topic", r.cfg.Topic, "error", err)
		return
	}
	reset := make(map[int32]bool)
	for _, p := range slices.Sorted(maps.Keys(committed)) {
		start, ok := starts.Lookup(r.cfg.Topic, p)
		missing := start.Offset - committed[p]
		if !ok || missing <= 0 {
			continue
		}
		if m != nil {
			m.OffsetGap(ctx, r.cfg.Topic, p, missing)
		}
		resume := "the log start (kafka.start_from: earliest)"
		if r.cfg.StartLatest {
			resume = "the end of the partition (kafka.start_from: latest): the records from the log start to the end are skipped too"
		}
		r.log.Error("committed offset is below the partition's log start: retention deleted records this group never processed, they are lost to it; consuming resumes at "+resume,
			"topic", r.cfg.Topic, "partition", p, "committed", committed[p], "log_start", start.Offset, "records_lost", missing)
		reset[p] = true
	}
	r.gaps.mu.Lock()
	r.gaps.parts = reset
	r.gaps.mu.Unlock()
}

// adjustFetchOffsets, the client's kgo.AdjustFetchOffsetsFn hook, runs
// right after offsetsFetched: it moves the partitions checkGaps found below
// their log start to resetOffset.
func (r *Relay) adjustFetchOffsets(_ context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	r.gaps.mu.Lock()
	reset := r.gaps.parts
	r.gaps.parts = nil
	r.gaps.mu.Unlock()
	for p := range reset {
		if _, ok := offs[r.cfg.Topic][p]; ok {
			offs[r.cfg.Topic][p] = r.resetOffset()
		}
	}
	return offs, nil
}
