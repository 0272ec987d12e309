package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/pipeline"
)

// ownership checks, on kfake, that every commit of a group comes from the
// committed partition's current owner and that no partition's committed
// offset moves backwards.
//
// The owners come from the leader's SyncGroup request, which carries every
// member's assignment for its generation. With the cooperative-sticky
// balancer a partition that moves is first assigned to nobody for one
// generation, during which its previous owner revokes it and commits it;
// so the owner of partition p at generation G is G's assignee, or, when G
// assigns p to nobody (or its assignment was never seen), the owner at G-1.
// A commit passes when its MemberID is the owner at its Generation;
// "backwards" is an offset below the last commit that passed.
type ownership struct {
	group, topic string

	mu         sync.Mutex
	assigned   map[int32]map[int32]string // generation -> partition -> member
	first      int32                      // the lowest generation seen
	last       map[int32]int64            // partition -> offset of the last commit that passed
	commits    int
	violations []error
}

// watchOwnership installs the checks on fake for group's commits of topic
// (the only topic the group consumes); they are reported when the test
// ends, after the relays it started stopped. The control functions only
// observe: they run inside kfake's loop and never call the cluster.
func watchOwnership(t testing.TB, fake *kfake.Cluster, group, topic string) *ownership {
	o := &ownership{group: group, topic: topic, assigned: map[int32]map[int32]string{}, first: math.MaxInt32, last: map[int32]int64{}}
	t.Cleanup(func() { o.report(t) })
	fake.ControlKey(kmsg.SyncGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		o.sync(req.(*kmsg.SyncGroupRequest))
		return nil, nil, false
	})
	fake.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		o.commit(req.(*kmsg.OffsetCommitRequest))
		return nil, nil, false
	})
	return o
}

// sync records the assignment the group's leader sends for its generation;
// followers' requests carry none.
func (o *ownership) sync(req *kmsg.SyncGroupRequest) {
	if req.Group != o.group || len(req.GroupAssignment) == 0 {
		return
	}
	owners := map[int32]string{}
	var bad error
	for _, a := range req.GroupAssignment {
		var ma kmsg.ConsumerMemberAssignment
		if err := ma.ReadFrom(a.MemberAssignment); err != nil {
			bad = fmt.Errorf("generation %d: member %s's assignment does not decode: %w", req.Generation, a.MemberID, err)
			continue
		}
		for _, t := range ma.Topics {
			if t.Topic != o.topic {
				continue
			}
			for _, p := range t.Partitions {
				if other, ok := owners[p]; ok {
					bad = fmt.Errorf("generation %d assigns partition %d to both %s and %s", req.Generation, p, other, a.MemberID)
				}
				owners[p] = a.MemberID
			}
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.assigned[req.Generation] = owners
	o.first = min(o.first, req.Generation)
	if bad != nil {
		o.violations = append(o.violations, bad)
	}
}

// owner returns the member owning partition p at generation gen, "" for
// nobody; o.mu is held.
func (o *ownership) owner(gen, p int32) string {
	for g := gen; g >= o.first; g-- {
		if m, ok := o.assigned[g][p]; ok {
			return m
		}
	}
	return ""
}

func (o *ownership) commit(req *kmsg.OffsetCommitRequest) {
	if req.Group != o.group {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.commits++
	for _, t := range req.Topics {
		// OffsetCommit v10 names topics by id only.
		if t.Topic != "" && t.Topic != o.topic {
			continue
		}
		for _, p := range t.Partitions {
			if owner := o.owner(req.Generation, p.Partition); owner != req.MemberID {
				o.violations = append(o.violations, fmt.Errorf("partition %d committed at %d by member %s in generation %d, but its owner then is %q",
					p.Partition, p.Offset, req.MemberID, req.Generation, owner))
				continue
			}
			if last, ok := o.last[p.Partition]; ok && p.Offset < last {
				o.violations = append(o.violations, fmt.Errorf("partition %d committed at %d by its owner %s (generation %d) after %d: the committed offset moved backwards",
					p.Partition, p.Offset, req.MemberID, req.Generation, last))
			}
			o.last[p.Partition] = max(o.last[p.Partition], p.Offset)
		}
	}
}

// report fails t for every violation seen, and when no commit was seen.
// The test's cleanup calls it.
func (o *ownership) report(t testing.TB) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.commits == 0 {
		t.Error("kfake saw no commit of the group")
	}
	for _, v := range o.violations {
		t.Error(v)
	}
}

// TestCommitRefusedIsCommittedLater: the broker refuses the commit of
// partition 0's end offset once, alone or with every partition of the
// commit; the relay counts and logs the refusals, keeps the other
// partitions' commits, and commits partition 0 later: nothing is lost.
// Mutation caught: commit() marking a refused partition committed (the
// `continue` after a partition error removed): the relay never sends
// partition 0's end again and the group stays below it.
func TestCommitRefusedIsCommittedLater(t *testing.T) {
	for _, tc := range []struct {
		name       string
		partitions []int32 // refused in the commit; nil means all
	}{
		{"one partition", []int32{0}},
		{"every partition", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStubTopic(t, 2)
			s.k.RequireFake(t)
			s.produce(t, 2, 0, 4)
			fake := s.k.Fake()
			watchOwnership(t, fake, s.group, s.topic)
			// Refuse the first commit that carries partition 0's end
			// offset: a refusal the relay forgot could not be made up by
			// a later commit of partition 0. (kgo itself retries a commit
			// refused with a coordinator error, so this one is not.)
			refuse := fake.Fault(kfake.Fault{
				Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: s.group, Partitions: tc.partitions,
				Err: kerr.UnknownTopicOrPartition, Count: 1,
				When: func(req kmsg.Request) bool {
					for _, t := range req.(*kmsg.OffsetCommitRequest).Topics {
						for _, p := range t.Partitions {
							if p.Partition == 0 && p.Offset == 4 {
								return true
							}
						}
					}
					return false
				},
			})
			var logs lockedBuffer
			m := newCounter()
			sink := &scriptedSink{}
			stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{sink: sink, metrics: m,
				logger: slog.New(slog.NewTextHandler(&logs, nil))}))
			ctx := waitCtx(t)
			// The refusal is counted (Metrics.Commit(false)).
			for m.refused.Load() == 0 {
				select {
				case <-m.commits:
				case <-ctx.Done():
					t.Fatalf("the relay never saw a refused commit (kfake refused %d)", refuse.Hits())
				}
			}
			// Stopping commits what is still uncommitted, refused or not.
			stop()
			if got, want := s.k.Committed(t, s.group, s.topic), map[int32]int64{0: 4, 1: 4}; !maps.Equal(got, want) {
				t.Fatalf("committed %v, want %v", got, want)
			}
			if out := logs.String(); !containsAll(out, `msg="offset commit failed"`, "UNKNOWN_TOPIC_OR_PARTITION", "partition=0") {
				t.Errorf("the refusal was not logged with its partition:\n%s", out)
			}
			for p := range int32(2) {
				for i := range 4 {
					if n := sink.count(value(p, i)); n != 1 {
						t.Errorf("%s delivered %d times, want once", value(p, i), n)
					}
				}
			}
		})
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// sinkFunc adapts a function to relay.Sink.
type sinkFunc func(context.Context, pipeline.Request) pipeline.Settlement

func (f sinkFunc) Send(ctx context.Context, req pipeline.Request) pipeline.Settlement {
	return f(ctx, req)
}

// holdingSink holds every request until its context ends (its partition
// was revoked or lost) or release is closed, then answers answer: a sink
// whose acknowledgement arrives after the partition moved.
type holdingSink struct {
	release chan struct{}
	answer  func(late bool) pipeline.Settlement
	total   int            // records expected in flight
	held    chan struct{}  // closed once total records are held
	count   atomic.Int32   // records sent to the sink
	once    sync.Once      // closes held
	mu      sync.Mutex     // guards acked
	acked   map[string]int // body -> acknowledgements answered Delivered
}

func newHoldingSink(total int, answer func(late bool) pipeline.Settlement) *holdingSink {
	return &holdingSink{release: make(chan struct{}), answer: answer, total: total, held: make(chan struct{}), acked: map[string]int{}}
}

func (s *holdingSink) Send(ctx context.Context, req pipeline.Request) pipeline.Settlement {
	if int(s.count.Add(int32(len(req.Hits)))) >= s.total {
		s.once.Do(func() { close(s.held) })
	}
	late := false
	select {
	case <-ctx.Done():
		late = true
	case <-s.release:
	}
	st := s.answer(late)
	if st.Outcome == pipeline.Delivered {
		s.mu.Lock()
		for _, h := range req.Hits {
			s.acked[string(h.Body)]++
		}
		s.mu.Unlock()
	}
	return st
}

func (s *holdingSink) ackedBodies() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.acked)
}

// delivered204 is a collector's acknowledgement.
var delivered204 = pipeline.Settlement{Outcome: pipeline.Delivered, Status: 204}

// TestLateAckAfterRevokeIsNotCommitted: member A holds every record in its
// sink when member B joins; A's revoke drain times out, and its sink then
// acknowledges the revoked partition's records (their requests' contexts
// ended). Those acknowledgements commit nothing: A never commits the
// partition after its revoke, the group's commits all come from owners,
// and B delivers the records again.
// Mutation caught: revoked() not ending the assignments (its
// endAssignments call deleted, so the revoked trackers are never closed):
// A's late acknowledgements settle the revoking tracker and A commits the
// partition B owns (A's commits after the revoke, and the ownership check).
// Deleting only the close in offsets' Book.End is not caught here: the
// tracker leaves the book, so nothing can commit it either; that mutation
// is TestRevokedPartitionsStopSending's.
func TestLateAckAfterRevokeIsNotCommitted(t *testing.T) {
	s := newStubTopic(t, 2)
	s.produce(t, 2, 0, 3)
	if fake := s.k.Fake(); fake != nil {
		watchOwnership(t, fake, s.group, s.topic)
	}
	m := newCounter()
	holder := newHoldingSink(6, func(bool) pipeline.Settlement { return delivered204 })
	revokes := &memberLog{ended: map[int32]time.Time{}, signal: make(chan struct{}, 1), message: "partitions revoked"}
	// A's revoke drain is short: the sink holds everything until the
	// partition's context ends.
	a := newStubRelay(t, s.k, s.topic, s.group, stub{sink: holder, metrics: m, logger: slog.New(revokes),
		shutdown: 200 * time.Millisecond, concurrency: 8})
	var mu sync.Mutex
	var staleCommits []string
	relay.OnCommit(a, func(offs map[string]map[int32]kgo.EpochOffset) {
		revokes.mu.Lock()
		defer revokes.mu.Unlock()
		for p, o := range offs[s.topic] {
			if _, ok := revokes.ended[p]; ok {
				mu.Lock()
				staleCommits = append(staleCommits, fmt.Sprintf("partition %d at %d", p, o.Offset))
				mu.Unlock()
			}
		}
	})
	stopA := runRelay(t, a)
	ctx := waitCtx(t)
	select {
	case <-holder.held:
	case <-ctx.Done():
		t.Fatal("member A never held every record")
	}

	// B delivers at once; once it owns a partition, A's sink lets its
	// other requests through.
	var once sync.Once
	sinkB := &scriptedSink{}
	stopB := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{sink: sinkB, metrics: m,
		onReady: func(ready bool) {
			if ready {
				once.Do(func() { close(holder.release) })
			}
		}}))
	s.waitCommitted(t, m, map[int32]int64{0: 3, 1: 3})
	// What A had revoked, and committed since, before stopping revokes
	// the rest.
	revokes.mu.Lock()
	revoked := slices.Collect(maps.Keys(revokes.ended))
	revokes.mu.Unlock()
	mu.Lock()
	stale := slices.Clone(staleCommits)
	mu.Unlock()
	stopB()
	stopA()

	lateAcks := 0
	for body := range holder.ackedBodies() {
		if p, _ := parseValue(body); slices.Contains(revoked, p) {
			lateAcks++
			if sinkB.count(body) == 0 {
				t.Errorf("%s: A acknowledged it after its partition was revoked and B never sent it: the late acknowledgement was committed", body)
			}
		}
	}
	if lateAcks == 0 {
		t.Fatalf("A acknowledged no record of its revoked partitions %v: the test proves nothing", revoked)
	}
	if len(stale) > 0 {
		t.Errorf("A committed partitions revoked from it, after the revoke: %v", stale)
	}
	// A late acknowledgement is not a settlement: B settles those records,
	// so each of the 6 is counted delivered once, and A's late ones as
	// abandoned{revoked}. Mutation caught: settle() not checking the
	// tracker (A's late acks counted as delivered too: more than 6).
	if got := m.get("delivered", ""); got != 6 {
		t.Errorf("settled{delivered} = %d, want 6 (one per record, whichever member settled it)", got)
	}
	if got := m.get("abandoned", "revoked"); got < int64(lateAcks) {
		t.Errorf("abandoned{revoked} = %d, want at least the %d late acknowledgements", got, lateAcks)
	}
}

// TestLostPartitionIsNotCommitted: the member delivers the first records of
// both partitions (not committed yet: the commit interval is long), holds
// the next ones, and then loses its session (a heartbeat answered
// UNKNOWN_MEMBER_ID). The loss commits nothing, its held records are
// released as abandoned{lost}; once the partitions are assigned to it again
// every record is delivered exactly once (what it settled before the loss
// is not sent again) and the group commits the end.
// Mutations caught: lost() committing before it ends the assignments, as a
// revoke does (the group is committed at the loss); lost() not ending the
// assignments (nothing is released as lost).
func TestLostPartitionIsNotCommitted(t *testing.T) {
	s := newStubTopic(t, 2)
	s.k.RequireFake(t)
	fake := s.k.Fake()
	watchOwnership(t, fake, s.group, s.topic)
	s.produce(t, 2, 0, 2)

	// Records 0 and 1 of each partition are delivered at once; 2 and 3 are
	// held until their partition is lost (then they are not delivered, as
	// the real sink answers when its context ends), and delivered after.
	lost := &memberLog{ended: map[int32]time.Time{}, signal: make(chan struct{}, 1), message: "partitions lost"}
	afterLoss := make(chan struct{})
	holder := newHoldingSink(4, func(late bool) pipeline.Settlement {
		if late {
			return pipeline.Settlement{Outcome: pipeline.RetryLater, Reason: "context_canceled"}
		}
		return delivered204
	})
	holder.release = afterLoss
	var early scriptedSink
	sink := sinkFunc(func(ctx context.Context, req pipeline.Request) pipeline.Settlement {
		if _, i := parseValue(string(req.Hits[0].Body)); i < 2 {
			return early.Send(ctx, req)
		}
		return holder.Send(ctx, req)
	})
	m := newCounter()
	stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{sink: sink, metrics: m, logger: slog.New(lost),
		commit: time.Hour, concurrency: 8}))
	ctx := waitCtx(t)
	for early.count(value(0, 1))+early.count(value(1, 1)) < 2 {
		select {
		case <-ctx.Done():
			t.Fatal("records 0 and 1 were never delivered")
		case <-m.events:
		}
	}
	s.produce(t, 2, 2, 4)
	select {
	case <-holder.held:
	case <-ctx.Done():
		t.Fatal("records 2 and 3 were never sent")
	}

	fake.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Heartbeat}, Group: s.group, TopLevel: true, Err: kerr.UnknownMemberID})
	select {
	case <-lost.signal:
	case <-ctx.Done():
		t.Fatal("the member never lost its partitions")
	}
	close(afterLoss)
	if got := s.k.Committed(t, s.group, s.topic); len(got) > 0 {
		t.Errorf("committed %v at the loss, want nothing: a lost partition belongs to its next owner", got)
	}
	for len(holder.ackedBodies()) < 4 {
		select {
		case <-ctx.Done():
			t.Fatalf("records 2 and 3 were not delivered after the loss: %v", holder.ackedBodies())
		case <-m.events:
		}
	}
	stop()
	// Run has returned: every release was counted.
	if n := m.get("abandoned", "lost"); n != 4 {
		t.Errorf("abandoned{lost} = %d, want the 4 records held at the loss", n)
	}
	if got, want := s.k.Committed(t, s.group, s.topic), map[int32]int64{0: 4, 1: 4}; !maps.Equal(got, want) {
		t.Errorf("committed %v, want %v", got, want)
	}
	for p := range int32(2) {
		for i := range 4 {
			if n := early.count(value(p, i)) + holder.ackedBodies()[value(p, i)]; n != 1 {
				t.Errorf("%s delivered %d times, want once", value(p, i), n)
			}
		}
	}
}
