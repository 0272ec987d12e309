package relay_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/atrelay/atrelay/internal/relay"
)

var _ relay.GapMetrics = (*counter)(nil)

// OffsetGap makes the tests' counter a relay.GapMetrics:
// "offset_gap/<topic>" sums the records lost, and "offset_gap_checked/<topic>"
// counts the partitions checked (each adds 0 first).
func (c *counter) OffsetGap(_ context.Context, topic string, _ int32, missing int64) {
	c.mu.Lock()
	c.settled["offset_gap/"+topic] += missing
	if missing == 0 {
		c.settled["offset_gap_checked/"+topic]++
	}
	c.mu.Unlock()
	c.event()
}

// TestCommittedOffsetBelowLogStart (issue 15): the group committed 2 on
// partition 0 and 3 on partition 1, then retention deleted partition 0's
// records below 6 while the group was stopped. At its start the relay logs
// one ERROR naming the topic, partition 0 and the 4 records lost, counts
// them (GapMetrics), and consumes partition 0 from where start_from says:
// its log start 6 (earliest) or its end (latest). Partition 1, whose
// committed offset is still in its log, consumes from 3 either way, with
// no ERROR.
// Mutations caught: checkGaps logging at INFO (no ERROR line); the metric
// not added (offset_gap 0). adjustFetchOffsets leaving the offsets as they
// are passes: on a fresh client, franz-go's own reset of the out-of-range
// offset follows ConsumeResetOffset too; the hook makes it explicit, and
// covers a partition this client consumed before (there, franz-go resumes
// at the log start whatever start_from says).
func TestCommittedOffsetBelowLogStart(t *testing.T) {
	for _, latest := range []bool{false, true} {
		name := "start_from earliest"
		if latest {
			name = "start_from latest"
		}
		t.Run(name, func(t *testing.T) {
			s := newStubTopic(t, 2)
			s.produce(t, 2, 0, 10)
			adm := s.k.Admin(t)
			var commit kadm.Offsets
			commit.Add(kadm.Offset{Topic: s.topic, Partition: 0, At: 2, LeaderEpoch: -1})
			commit.Add(kadm.Offset{Topic: s.topic, Partition: 1, At: 3, LeaderEpoch: -1})
			if err := adm.CommitAllOffsets(waitCtx(t), s.group, commit); err != nil {
				t.Fatal(err)
			}
			var del kadm.Offsets
			del.Add(kadm.Offset{Topic: s.topic, Partition: 0, At: 6})
			resps, err := adm.DeleteRecords(waitCtx(t), del)
			if err == nil {
				err = resps.Error()
			}
			if err != nil {
				t.Fatalf("delete records below 6: %v", err)
			}

			var logs lockedBuffer
			m := newCounter()
			sink := &scriptedSink{}
			stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{sink: sink, metrics: m, startLatest: latest,
				logger: slog.New(slog.NewTextHandler(&logs, nil))}))
			end0 := 10
			if latest {
				// The relay resumed partition 0 at its end: a record
				// produced after that is delivered. Records produced
				// before the relay listed the end are skipped too, so
				// one is produced at each tick until one arrives.
				ctx := waitCtx(t)
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				next := 10
				for delivered := false; !delivered; {
					s.produce(t, 1, next, next+1)
					next++
					select {
					case <-tick.C:
					case <-ctx.Done():
						t.Fatal("no record produced after the start delivered")
					}
					for i := 10; i < next; i++ {
						delivered = delivered || sink.count(value(0, i)) > 0
					}
				}
				end0 = next
			}
			s.waitCommitted(t, m, map[int32]int64{0: int64(end0), 1: 10})
			stop()

			from0 := 6
			if latest {
				from0 = 10
			}
			for p, from := range map[int32]int{0: from0, 1: 3} {
				for i := range 10 {
					want := 0
					if i >= from {
						want = 1
					}
					if n := sink.count(value(p, i)); n != want {
						t.Errorf("%s delivered %d times, want %d", value(p, i), n, want)
					}
				}
			}
			lines := errorLines(logs.String(), "committed offset is below the partition's log start")
			if len(lines) != 1 || !containsAll(lines[0], "topic="+s.topic, "partition=0", "records_lost=4", "committed=2", "log_start=6") {
				t.Fatalf("want one ERROR naming partition 0 and 4 records lost, got %q\nlogs:\n%s", lines, logs.String())
			}
			if want := map[bool]string{false: "start_from: earliest", true: "start_from: latest"}[latest]; !strings.Contains(lines[0], want) {
				t.Errorf("the ERROR does not say where consuming resumes (%s): %s", want, lines[0])
			}
			if got := m.get("offset_gap", s.topic); got != 4 {
				t.Errorf("offset_gap = %d, want 4", got)
			}
			if got := m.get("offset_gap_checked", s.topic); got < 2 {
				t.Errorf("%d partitions checked, want 2", got)
			}
		})
	}
}
