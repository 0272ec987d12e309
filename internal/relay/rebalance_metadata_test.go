package relay_test

import (
	"maps"
	"testing"
	"time"

	"github.com/atrelay/atrelay/pipeline"
)

// TestRebalanceHandsOverTheSettledSet is the settled set's path through a
// rebalance, where TestCrashWithSiteDownSendsOnlyTheLastInterval covers a
// crash: two partitions, one record in ten for a site that answers nothing
// (parking off), the others for a healthy site. The first member commits
// only when it must (its commit interval is an hour): it delivers every
// healthy record, and the down site's first record would hold each
// partition's committed offset at 0 anyway. A second member joins: one
// partition moves, so the first member drains it (bounded by the shutdown
// timeout), commits it with the settled set in the metadata and lets it
// go. The second member reads the metadata with the offset and settles the
// healthy records it holds as already_settled instead of sending them
// again. Then the site comes back, both members deliver the rest and stop.
//
// Mutations caught (each run once): restoreSettled returning at once (the
// metadata is written, never read): the second member sends the moved
// partition's 90 healthy records again and counts none as already
// settled; revoked no longer committing: the second member starts from the
// beginning, the same 90 duplicates. No other relay test caught the
// second, their 10 ms commit interval leaving almost nothing for the
// revoke's commit to add.
func TestRebalanceHandsOverTheSettledSet(t *testing.T) {
	const n = 100
	const partitions = 2
	const healthy = partitions * n * 9 / 10
	s := newStubTopic(t, partitions)
	down := &pipeline.Site{Integration: "down", ID: 503, Endpoint: "http://127.0.0.1/down"}
	good := &pipeline.Site{Integration: "good", ID: 1, Endpoint: "http://127.0.0.1/event"}
	stages := oneInTen(down, good)
	sink := newDownSink(down)
	ctx := waitCtx(t)
	waitDelivered := func(what string, want int) {
		t.Helper()
		for len(sink.deliveries()) < want {
			select {
			case <-sink.answered:
			case <-ctx.Done():
				t.Fatalf("%s: %d records delivered, want %d", what, len(sink.deliveries()), want)
			}
		}
	}
	// A short shutdown timeout bounds the revoke's drain: the down site's
	// records in flight never settle.
	s.produce(t, partitions, 0, n)
	first := newCounter()
	stopFirst := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{stages: stages, sink: sink, metrics: first,
		commit: time.Hour, shutdown: 200 * time.Millisecond}))
	waitDelivered("the first member", healthy)
	deliveredBefore := sink.deliveries()

	// The second member: one partition moves to it.
	second := newCounter()
	stopSecond := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{stages: stages, sink: sink, metrics: second,
		shutdown: 200 * time.Millisecond}))
	for second.sum(pipeline.Filtered.String())+second.sum(pipeline.Delivered.String()) == 0 {
		select {
		case <-second.events:
		case <-ctx.Done():
			t.Fatal("the second member settled nothing: no partition moved to it")
		}
	}

	// The site back: both members deliver the rest, then stop (and commit).
	sink.setUp()
	waitDelivered("after the site came back", partitions*n)
	stopSecond()
	stopFirst()
	if got, want := s.k.Committed(t, s.group, s.topic), (map[int32]int64{0: n, 1: n}); !maps.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}

	delivered := sink.deliveries()
	dups, resent := 0, 0
	for p := range int32(partitions) {
		for i := range n {
			v := value(p, i)
			if c := delivered[v]; c > 1 && isGood(i) {
				dups += c - 1
				if deliveredBefore[v] > 0 {
					resent++
				}
			}
		}
	}
	skipped := second.get(pipeline.Filtered.String(), "already_settled")
	t.Logf("healthy-site duplicates after the rebalance: %d (%d of records delivered before it); records the second member settled as already_settled: %d",
		dups, resent, skipped)
	if dups != 0 {
		t.Errorf("%d healthy-site duplicates after the rebalance, want 0: the moved partition's revoke commit held every healthy record", dups)
	}
	if skipped != n*9/10 {
		t.Errorf("the second member settled %d records as already_settled, want the moved partition's %d healthy records", skipped, n*9/10)
	}
}
