package offsets

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// op is one step of a scenario: track or settle an offset, or close.
type op struct {
	kind   byte // 't' track, 's' settle, 'c' close, 'r' revoke, 'm' mark committed, 'M' mark what Committable says
	offset int64
	want   bool // Track/Settle's answer
}

func TestTracker(t *testing.T) {
	tests := []struct {
		name    string
		ops     []op
		want    int64 // committable At; -1 for none
		pending int
	}{
		{"nothing tracked", nil, -1, 0},
		{"tracked, none settled", []op{{'t', 5, true}, {'t', 6, true}}, 5, 2},
		{"in-order settle", []op{{'t', 5, true}, {'t', 6, true}, {'s', 5, true}, {'s', 6, true}}, 7, 0},
		{"out-of-order settle holds back", []op{{'t', 5, true}, {'t', 6, true}, {'t', 7, true}, {'s', 7, true}, {'s', 6, true}}, 5, 1},
		{"out-of-order then the hole", []op{{'t', 5, true}, {'t', 6, true}, {'t', 7, true}, {'s', 7, true}, {'s', 6, true}, {'s', 5, true}}, 8, 0},
		{"gaps in offsets", []op{{'t', 10, true}, {'t', 13, true}, {'t', 20, true}, {'s', 10, true}, {'s', 20, true}}, 13, 1},
		{"gaps all settled", []op{{'t', 10, true}, {'t', 13, true}, {'s', 13, true}, {'s', 10, true}}, 14, 0},
		{"settle of untracked offset", []op{{'t', 10, true}, {'s', 11, false}, {'s', 9, false}}, 10, 1},
		{"double settle", []op{{'t', 10, true}, {'t', 11, true}, {'s', 11, true}, {'s', 11, false}}, 10, 1},
		{"settle popped offset", []op{{'t', 10, true}, {'s', 10, true}, {'s', 10, false}}, 11, 0},
		{"track not increasing", []op{{'t', 10, true}, {'t', 10, false}, {'t', 9, false}, {'t', 11, true}}, 10, 2},
		{"track after close", []op{{'t', 1, true}, {'c', 0, false}, {'t', 2, false}}, -1, 1},
		{"settle after close", []op{{'t', 1, true}, {'c', 0, false}, {'s', 1, false}}, -1, 1},
		{"revoking refuses track, accepts settle", []op{{'t', 1, true}, {'r', 0, false}, {'t', 2, false}, {'s', 1, true}}, 2, 0},
		{"no news after mark", []op{{'t', 1, true}, {'s', 1, true}, {'m', 2, false}}, -1, 0},
		{"news after mark", []op{{'t', 1, true}, {'s', 1, true}, {'m', 2, false}, {'t', 2, true}, {'s', 2, true}}, 3, 0},
		// The commit holds at 2; a record settled above it is news: the
		// commit's metadata must tell the next owner.
		{"settled above the mark is news", []op{{'t', 1, true}, {'t', 2, true}, {'t', 3, true}, {'t', 4, true}, {'s', 1, true},
			{'s', 3, true}, {'M', 0, false}, {'s', 4, true}}, 2, 1},
		{"no news when nothing more settled above the mark", []op{{'t', 1, true}, {'t', 2, true}, {'t', 3, true}, {'s', 1, true},
			{'s', 3, true}, {'M', 0, false}, {'t', 4, true}}, -1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker("t", 0)
			for i, o := range tt.ops {
				var got bool
				switch o.kind {
				case 't':
					got = tr.Track(o.offset, 1)
				case 's':
					got = tr.Settle(o.offset)
				case 'c':
					tr.Close()
					continue
				case 'r':
					tr.Revoke()
					continue
				case 'm':
					tr.MarkCommitted(Offset{At: o.offset, Metadata: MetadataPrefix})
					continue
				case 'M':
					c, _ := tr.Committable()
					tr.MarkCommitted(c)
					continue
				}
				if got != o.want {
					t.Fatalf("op %d %c(%d) = %v, want %v", i, o.kind, o.offset, got, o.want)
				}
			}
			c, ok := tr.Committable()
			if tt.want < 0 {
				if ok {
					t.Fatalf("Committable() = %v, want none", c)
				}
			} else if !ok || c.At != tt.want {
				t.Fatalf("Committable() = %v, %v; want %d", c, ok, tt.want)
			}
			if p := tr.Pending(); p != tt.pending {
				t.Fatalf("Pending() = %d, want %d", p, tt.pending)
			}
		})
	}
}

// rec is one record the model tracked.
type rec struct {
	offset int64
	epoch  int32
}

// model is the naive reference tracker: the list of tracked records with
// their epochs, the set of settled offsets, and the tracker's state. No
// ring, no popping, no binary search.
type model struct {
	tracked   []rec
	settled   map[int64]bool
	revoking  bool
	closed    bool
	committed int64 // the highest MarkCommitted; -1 before
	// marked is the metadata of the mark at committed, decoded; nil when
	// it did not decode (a mark by hand, without metadata).
	marked *Settled
	// markedOK is false when the mark's metadata did not decode.
	markedOK bool
}

// committable is the contract, written out: the first unsettled offset (or
// the one after the last record), carrying the epoch of the record just
// below it (-1 when none is), reported only while open and only when it is
// past the last mark, or at it with a different set of records settled
// above it (the metadata, which check decodes). Its Metadata is left empty.
func (m *model) committable() (Offset, bool) {
	if m.closed || len(m.tracked) == 0 {
		return Offset{}, false
	}
	o := Offset{At: m.tracked[len(m.tracked)-1].offset + 1, Epoch: -1}
	for _, r := range m.tracked {
		if !m.settled[r.offset] {
			o.At = r.offset
			break
		}
		o.Epoch = r.epoch
	}
	if o.At < m.committed || o.At == m.committed && m.markedOK && m.sameAbove(o.At) {
		return Offset{}, false
	}
	return o, true
}

// sameAbove reports whether the tracked records above at that are settled
// are exactly those the mark's metadata holds.
func (m *model) sameAbove(at int64) bool {
	for _, r := range m.tracked {
		if r.offset > at && m.settled[r.offset] != m.marked.Contains(r.offset) {
			return false
		}
	}
	return true
}

// mark is MarkCommitted on the model.
func (m *model) mark(o Offset) {
	if o.At < m.committed {
		return
	}
	m.committed = o.At
	var err error
	m.marked, err = DecodeMetadata(o.At, o.Metadata)
	m.markedOK = err == nil
}

func (m *model) pending() int {
	n := 0
	for _, r := range m.tracked {
		if !m.settled[r.offset] {
			n++
		}
	}
	return n
}

// harness applies the same operation to a Tracker and to the model.
type harness struct {
	tr    *Tracker
	m     model
	next  int64 // the next offset a fetch would return
	epoch int32 // the leader epoch it would carry
}

func newHarness(start int64) *harness {
	return &harness{
		tr:    NewTracker("t", 0),
		m:     model{settled: map[int64]bool{}, committed: -1},
		next:  start,
		epoch: 5,
	}
}

// step maps op to an operation, weighted so that tracks and settles
// dominate and Revoke and Close are rare (1/256 each), and arg to its
// parameter. It returns what disagreed with the model, or "".
func (h *harness) step(op byte, arg int) string {
	m := &h.m
	switch {
	case op < 100: // Track the next record; sometimes the leader changes.
		if arg%9 == 0 {
			h.epoch++
		}
		want := !m.revoking && !m.closed
		if got := h.tr.Track(h.next, h.epoch); got != want {
			return fmt.Sprintf("Track(%d) = %v, want %v (revoking %v, closed %v)", h.next, got, want, m.revoking, m.closed)
		}
		if want {
			m.tracked = append(m.tracked, rec{h.next, h.epoch})
		}
		h.next += 1 + int64(arg%3) // gaps: transaction markers, compaction
	case op < 108: // Track an offset already passed.
		if len(m.tracked) == 0 {
			return ""
		}
		last := m.tracked[len(m.tracked)-1].offset
		if o := last - int64(arg%4); h.tr.Track(o, h.epoch) {
			return fmt.Sprintf("Track(%d) accepted at or below the last tracked %d", o, last)
		}
	case op < 208: // Settle a tracked record (maybe again).
		if len(m.tracked) == 0 {
			return ""
		}
		o := m.tracked[arg%len(m.tracked)].offset
		want := !m.closed && !m.settled[o]
		if got := h.tr.Settle(o); got != want {
			return fmt.Sprintf("Settle(%d) = %v, want %v", o, got, want)
		}
		if want {
			m.settled[o] = true
		}
	case op < 216: // Settle an offset never tracked.
		if o := h.next + int64(arg%3); h.tr.Settle(o) {
			return fmt.Sprintf("Settle(%d) of an untracked offset accepted", o)
		}
	case op < 240: // Commit: what Committable said, or a stale, lower mark.
		if c, ok := h.tr.Committable(); ok && arg%4 != 0 {
			h.tr.MarkCommitted(c)
			m.mark(c)
		} else {
			stale := Offset{At: m.committed - int64(arg%3)}
			h.tr.MarkCommitted(stale)
			m.mark(stale)
		}
	case op < 254: // Drained with a dead context: nil exactly when nothing waits.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := h.tr.Drained(ctx)
		if want := m.closed || m.pending() == 0; (err == nil) != want {
			return fmt.Sprintf("Drained(cancelled) = %v with %d pending, closed %v", err, m.pending(), m.closed)
		}
	case op == 254:
		h.tr.Revoke()
		m.revoking = true
	default:
		h.tr.Close()
		m.revoking, m.closed = true, true
	}
	return h.check()
}

// check compares the tracker with the model after a step: the committable
// offset exactly (progress, the epoch and the mark, not only safety), the
// pending count, and the closed state.
func (h *harness) check() string {
	m := &h.m
	want, wantOK := m.committable()
	got, ok := h.tr.Committable()
	if ok != wantOK || got.At != want.At || got.Epoch != want.Epoch {
		return fmt.Sprintf("Committable() = %+v, %v; model %+v, %v", got, ok, want, wantOK)
	}
	if ok {
		above, err := DecodeMetadata(got.At, got.Metadata)
		if err != nil {
			return fmt.Sprintf("Committable() metadata %q: %v", got.Metadata, err)
		}
		for _, r := range m.tracked {
			if r.offset < got.At && !m.settled[r.offset] {
				return fmt.Sprintf("committable %d passes unsettled %d", got.At, r.offset)
			}
			// The metadata holds exactly the settled records above
			// the offset (the model is far below the budget).
			if in, want := above.Contains(r.offset), r.offset > got.At && m.settled[r.offset]; in != want {
				return fmt.Sprintf("Committable() at %d metadata %q: holds %d is %v, want %v", got.At, got.Metadata, r.offset, in, want)
			}
		}
	}
	if p, want := h.tr.Pending(), m.pending(); p != want {
		return fmt.Sprintf("Pending() = %d, model %d", p, want)
	}
	if c := h.tr.Closed(); c != m.closed {
		return fmt.Sprintf("Closed() = %v, model %v", c, m.closed)
	}
	// Settled, which a later assignment of the partition skips, never holds
	// an unsettled record (that record would never be sent) and holds every
	// record settled at or above the last mark.
	st := h.tr.Settled()
	if m.closed && st != nil {
		return "Settled() of a closed tracker is not nil"
	}
	for _, r := range m.tracked {
		if m.closed {
			break
		}
		switch in := st.Contains(r.offset); {
		case in && !m.settled[r.offset]:
			return fmt.Sprintf("Settled() contains unsettled %d", r.offset)
		case !in && m.settled[r.offset] && r.offset >= m.committed:
			return fmt.Sprintf("Settled() lacks %d, settled at or above the mark %d", r.offset, m.committed)
		}
	}
	return ""
}

// TestTrackerModel drives random operations (Track, stale Track, Settle,
// Settle of untracked offsets, MarkCommitted with fresh and stale marks,
// Drained, Revoke, Close), with leader epochs that change along the way,
// against the tracker and the model, and requires after every step that
// Committable equals the model's answer exactly: safety (never past an
// unsettled record), progress (ok whenever the model has progress past the
// last mark), and the epoch of the record below.
//
// Mutations caught: Committable always returning false (it passed before:
// only safety was checked); the first unsettled record's epoch instead of
// the last settled one's; `t.committed = o.At` instead of max (a stale mark
// moves the mark back); Track ignoring `revoking`.
func TestTrackerModel(t *testing.T) {
	for run := range 1000 {
		rng := rand.New(rand.NewPCG(uint64(run), 7))
		h := newHarness(int64(rng.IntN(10)))
		for step := range 200 {
			op := byte(rng.IntN(256))
			if msg := h.step(op, rng.IntN(1<<16)); msg != "" {
				t.Fatalf("run %d step %d (op %d): %s", run, step, op, msg)
			}
		}
	}
}

// FuzzTracker runs the model test's operations from the fuzzer's bytes, two
// per step (operation, argument), with the same exact check against the
// model. Its seeds alone catch the same mutations as TestTrackerModel.
func FuzzTracker(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 200, 201, 4})
	f.Add([]byte{0, 0, 0, 129, 255, 128})
	// Records across an epoch change (arg 9 bumps it), settled in order,
	// committed, then revoked with one pending and closed.
	f.Add([]byte{0, 1, 0, 9, 0, 1, 120, 0, 120, 1, 220, 1, 254, 0, 120, 2, 255, 0})
	// A fresh mark, then a stale, lower one (arg 4), then a Track after
	// Revoke.
	f.Add([]byte{0, 1, 120, 0, 220, 1, 220, 4, 254, 0, 0, 1})
	f.Fuzz(func(t *testing.T, ops []byte) {
		h := newHarness(0)
		for i := 0; i+1 < len(ops); i += 2 {
			if msg := h.step(ops[i], int(ops[i+1])); msg != "" {
				t.Fatalf("step %d (op %d): %s", i/2, ops[i], msg)
			}
		}
	})
}

// TestSettledAcrossAssignments follows one partition through three
// assignments on one member, none of which commits, each starting again at
// the group's committed offset 10 as the relay sees it: the records an
// earlier assignment settled are settled at once (as the relay does with
// Settled.Contains), and what each settled is merged with what the one
// before it had. Unsettled records (12 and 14) are never in it.
//
// Mutations caught (with the model test's Settled check): Settled counting
// unsettled slots above the frontier; Merge dropping prev (the second
// assignment ends before fetching 13 again, so only prev remembers it).
func TestSettledAcrossAssignments(t *testing.T) {
	// assign tracks offsets from 10 to end, settles those before holds and
	// those in deliver, and returns what it settled merged with before.
	assign := func(end int64, before *Settled, deliver ...int64) *Settled {
		tr := NewTracker("t", 0)
		for o := int64(10); o < end; o++ {
			tr.Track(o, 0)
			if before.Contains(o) || slices.Contains(deliver, o) {
				tr.Settle(o)
			}
		}
		s := tr.Settled().Merge(before)
		tr.Close()
		if tr.Settled() != nil {
			t.Fatal("Settled() of a closed tracker is not nil")
		}
		return s
	}
	check := func(s *Settled, want ...int64) {
		t.Helper()
		var got []int64
		for o := int64(10); o < 17; o++ {
			if s.Contains(o) {
				got = append(got, o)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Settled contains %v of 10..16, want %v", got, want)
		}
	}
	first := assign(15, nil, 10, 11, 13)
	check(first, 10, 11, 13)
	second := assign(12, first) // lost after fetching 10 and 11 again
	check(second, 10, 11, 13)
	third := assign(17, second, 15, 16)
	check(third, 10, 11, 13, 15, 16)
	if (*Settled)(nil).Merge(first) != first || first.Merge(nil) != first {
		t.Fatal("Merge with nil is not the identity")
	}
}

// TestCommittedEpoch pins the epoch a commit carries: that of the last
// settled record below the committed offset (Kafka's committed leader epoch
// is the epoch of the last record consumed; franz-go commits that too), -1
// when nothing below it was settled. The records cross a leader change:
// 10 and 11 in epoch 3, then 13 and 14 in epoch 4 (12 is a gap).
//
// Mutation caught: the epoch of the first unsettled record (the code before
// this test) gives {13 4} for "the epoch-3 records settled", and the epoch
// of the last tracked record gives {11 4} for "first settled".
func TestCommittedEpoch(t *testing.T) {
	tests := []struct {
		name    string
		settled []int64
		want    Offset
	}{
		{"none settled", nil, Offset{10, -1, "atrelay1:"}},
		{"first settled", []int64{10}, Offset{11, 3, "atrelay1:"}},
		{"the epoch-3 records settled", []int64{10, 11}, Offset{13, 3, "atrelay1:"}},
		{"one epoch-4 record settled", []int64{11, 10, 13}, Offset{14, 4, "atrelay1:"}},
		{"all settled", []int64{14, 13, 11, 10}, Offset{15, 4, "atrelay1:"}},
		// 13 and 14 are one run, from 13 (3 above 10) for 2 offsets.
		{"only later records settled", []int64{13, 14}, Offset{10, -1, "atrelay1:3+2"}},
		// 11 and 13 are one run too: 12 is no record.
		{"hole at the start", []int64{11, 13}, Offset{10, -1, "atrelay1:1+3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker("t", 0)
			for _, r := range []rec{{10, 3}, {11, 3}, {13, 4}, {14, 4}} {
				tr.Track(r.offset, r.epoch)
			}
			for _, o := range tt.settled {
				if !tr.Settle(o) {
					t.Fatalf("Settle(%d) refused", o)
				}
			}
			if got, ok := tr.Committable(); !ok || got != tt.want {
				t.Fatalf("Committable() = %+v, %v; want %+v", got, ok, tt.want)
			}
		})
	}
}

// TestBookReassignGetsNewTracker follows one partition through revoke and
// re-assignment: while revoking, Book.Tracker returns nil (the poll loop
// tracks nothing) but the revoking tracker still settles and is still in the
// revoke's commit; once closed it refuses late acks, and the new
// assignment's tracker is a different one that the late ack cannot touch.
//
// Mutations caught: Book.Tracker returning a revoking tracker (the code
// before, which the old test relied on by calling Track on it); Book.Revoke
// not revoking; Book.Committable skipping revoking trackers (the revoke's
// commit would lose the drained records); Assign reusing the old tracker.
func TestBookReassignGetsNewTracker(t *testing.T) {
	b := NewBook(context.Background())
	b.Assign("t", []int32{0, 1})
	old := b.Tracker("t", 0)
	if old == nil || old.Topic() != "t" || old.Partition() != 0 {
		t.Fatalf("Tracker(t, 0) = %v", old)
	}
	if !old.Track(10, 0) || !old.Track(11, 0) {
		t.Fatal("Track refused on a live tracker")
	}
	revoked := b.Revoke("t", []int32{0, 7}) // 7 is not assigned
	if len(revoked) != 1 || revoked[0] != old {
		t.Fatalf("Revoke returned %v", revoked)
	}
	if got := b.Tracker("t", 0); got != nil {
		t.Fatal("Book.Tracker returned a revoking tracker")
	}
	if b.Tracker("t", 1) == nil {
		t.Fatal("revoking partition 0 hid partition 1")
	}
	if old.Track(12, 0) {
		t.Fatal("a revoking tracker accepted a new record")
	}
	if !old.Settle(10) {
		t.Fatal("a revoking tracker refused a settlement during the drain")
	}
	if got := b.Committable()["t"][0]; got != (Offset{11, 0, "atrelay1:"}) {
		t.Fatalf("the revoke's commit for t/0 = %v, want {11 0}", got)
	}
	old.Close()
	if got := b.Committable(); len(got) != 0 {
		t.Fatalf("Committable includes a closed tracker: %v", got)
	}
	b.Assign("t", []int32{0})
	fresh := b.Tracker("t", 0)
	if fresh == nil || fresh == old {
		t.Fatalf("re-assigned partition got %p, the old tracker is %p", fresh, old)
	}
	if old.Settle(11) {
		t.Fatal("a late ack was accepted by the closed tracker")
	}
	if _, ok := fresh.Committable(); ok {
		t.Fatal("the late ack made the new tracker committable")
	}
	if got := b.Committable(); len(got) != 0 {
		t.Fatalf("Committable includes the fresh, empty partition: %v", got)
	}
	// Assign over a tracker that was never revoked (a missed callback)
	// closes it.
	one := b.Tracker("t", 1)
	b.Assign("t", []int32{1})
	if !one.Closed() || b.Tracker("t", 1) == one {
		t.Fatal("Assign kept or reused a live tracker")
	}
}

func TestBookLostCommitsNothing(t *testing.T) {
	b := NewBook(context.Background())
	b.Assign("t", []int32{3})
	tr := b.Tracker("t", 3)
	tr.Track(1, 0)
	tr.Settle(1)
	b.Lost("t", []int32{3, 4})
	if got := b.Committable(); len(got) != 0 {
		t.Fatalf("Committable after Lost = %v, want nothing", got)
	}
	if b.Tracker("t", 3) != nil {
		t.Fatal("lost partition still has a tracker")
	}
	if tr.Settle(1) || tr.Track(2, 0) {
		t.Fatal("the lost partition's tracker still accepts marks")
	}
}

func TestBookCommittableAndMark(t *testing.T) {
	b := NewBook(context.Background())
	b.Assign("a", []int32{0, 1})
	b.Assign("b", []int32{0})
	for _, k := range []struct {
		topic string
		p     int32
	}{{"a", 0}, {"a", 1}, {"b", 0}} {
		tr := b.Tracker(k.topic, k.p)
		tr.Track(5, 2)
		tr.Track(6, 2)
		tr.Settle(5)
	}
	got := b.Committable()
	want := map[string]map[int32]Offset{"a": {0: {6, 2, "atrelay1:"}, 1: {6, 2, "atrelay1:"}}, "b": {0: {6, 2, "atrelay1:"}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Committable() = %v, want %v", got, want)
	}
	b.MarkCommitted("a", 0, got["a"][0])
	b.MarkCommitted("c", 0, Offset{At: 6}) // not in the book: ignored
	got = b.Committable()
	if _, ok := got["a"][0]; ok {
		t.Fatalf("a/0 reported again after MarkCommitted: %v", got)
	}
	if len(got["a"]) != 1 || len(got["b"]) != 1 {
		t.Fatalf("MarkCommitted of a/0 hid other partitions: %v", got)
	}
}

// TestDrained checks that Drained really waits for the last settlement. It
// runs in a synctest bubble: synctest.Wait returns only once the waiter is
// blocked inside Drained, so the settles happen while it waits, and the
// test sees it stay blocked while a record is pending.
//
// Mutations caught: removing close(t.drained) in Settle ("last settle wakes
// the waiter" fails; the old test settled both records before the waiter
// looked and passed 200 of 200); removing it in Close ("close wakes the
// waiter" fails); Drained ignoring ctx ("deadline" deadlocks the bubble).
func TestDrained(t *testing.T) {
	// waitFor starts Drained(ctx) in the bubble and returns its result channel
	// once it is blocked there.
	waitFor := func(ctx context.Context, tr *Tracker) chan error {
		done := make(chan error, 1)
		go func() { done <- tr.Drained(ctx) }()
		synctest.Wait()
		return done
	}
	blocked := func(t *testing.T, done chan error, when string) {
		t.Helper()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("Drained returned %v %s", err, when)
		default:
		}
	}
	returned := func(t *testing.T, done chan error, when string) error {
		t.Helper()
		synctest.Wait()
		select {
		case err := <-done:
			return err
		default:
			t.Fatalf("Drained still waiting %s", when)
			return nil
		}
	}
	pending := func() *Tracker {
		tr := NewTracker("t", 0)
		tr.Track(1, 0)
		tr.Track(2, 0)
		return tr
	}

	t.Run("last settle wakes the waiter", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel() // on failure, lets the waiter leave the bubble
			tr := pending()
			first, second := waitFor(ctx, tr), waitFor(ctx, tr)
			blocked(t, first, "before any settle")
			tr.Settle(2)
			blocked(t, first, "with offset 1 pending")
			tr.Settle(1)
			for _, done := range []chan error{first, second} {
				if err := returned(t, done, "after the last settle"); err != nil {
					t.Fatalf("Drained() = %v, want nil", err)
				}
			}
			// Drained again: nothing pending, returns at once.
			if err := tr.Drained(ctx); err != nil {
				t.Fatalf("Drained() with nothing pending = %v", err)
			}
		})
	})
	t.Run("close wakes the waiter", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			tr := pending()
			done := waitFor(ctx, tr)
			blocked(t, done, "before Close")
			tr.Close()
			if err := returned(t, done, "after Close"); err != nil {
				t.Fatalf("Drained() = %v after Close, want nil", err)
			}
			if err := tr.Drained(ctx); err != nil {
				t.Fatalf("Drained() on a closed tracker = %v", err)
			}
		})
	})
	t.Run("deadline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			tr := pending()
			start := time.Now()
			if err := tr.Drained(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Drained() = %v, want the deadline", err)
			}
			if d := time.Since(start); d != 5*time.Second {
				t.Fatalf("Drained gave up after %v, want 5s", d)
			}
		})
	})
}

func TestRingGrowth(t *testing.T) {
	tr := NewTracker("t", 0)
	var offs []int64
	for i := range int64(1000) {
		tr.Track(i*2, 0)
		offs = append(offs, i*2)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(offs), func(i, j int) { offs[i], offs[j] = offs[j], offs[i] })
	settled := map[int64]bool{}
	for _, o := range offs {
		if !tr.Settle(o) {
			t.Fatalf("Settle(%d) refused", o)
		}
		settled[o] = true
		c, _ := tr.Committable()
		lowest := slices.IndexFunc(sortedKeys(1000), func(x int64) bool { return !settled[x] })
		want := int64(2000 - 1)
		if lowest >= 0 {
			want = int64(lowest) * 2
		}
		if c.At != want {
			t.Fatalf("after settling %d: committable %d, want %d", o, c.At, want)
		}
	}
}

func sortedKeys(n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i) * 2
	}
	return out
}

func BenchmarkTrackSettle(b *testing.B) {
	tr := NewTracker("t", 0)
	var off int64
	for b.Loop() {
		tr.Track(off, 0)
		tr.Settle(off)
		off++
	}
}

func ExampleTracker() {
	tr := NewTracker("events", 0)
	for _, off := range []int64{10, 11, 12} {
		tr.Track(off, 0)
	}
	tr.Settle(12) // delivered first
	tr.Settle(10)
	o, _ := tr.Committable()
	fmt.Println("commit", o.At, "pending", tr.Pending())
	tr.Close() // partition revoked
	fmt.Println("late ack accepted:", tr.Settle(11))
	// Output:
	// commit 11 pending 1
	// late ack accepted: false
}

// TestBookEndCarriesSettledAndCause follows one partition through a loss
// and a reassignment on the same member: the lost tracker's Context ends
// with ErrLost, and the next tracker knows exactly the offsets the lost one
// settled above its commit — not the ones before its first record, not the
// unsettled ones.
// Mutations caught: End not remembering Settled (Previously false
// everywhere); Settled starting at 0 instead of the first tracked offset
// (Previously(5) true); close without a cause (Cause is context.Canceled).
func TestBookEndCarriesSettledAndCause(t *testing.T) {
	b := NewBook(context.Background())
	b.Assign("t", []int32{0})
	tr := b.Tracker("t", 0)
	for off := int64(10); off < 15; off++ {
		tr.Track(off, 1)
	}
	tr.Settle(10)
	tr.Settle(11)
	tr.Settle(13) // 12 and 14 stay unsettled; nothing committed
	if got := b.Lost("t", []int32{0}); len(got) != 1 || got[0] != tr {
		t.Fatalf("Lost returned %v", got)
	}
	if !errors.Is(context.Cause(tr.Context()), ErrLost) || !errors.Is(context.Cause(tr.Context()), ErrClosed) {
		t.Fatalf("cause %v, want ErrLost", context.Cause(tr.Context()))
	}
	b.Assign("t", []int32{0})
	next := b.Tracker("t", 0)
	for off, want := range map[int64]bool{5: false, 9: false, 10: true, 11: true, 12: false, 13: true, 14: false, 15: false} {
		if got := next.Previously(off); got != want {
			t.Errorf("Previously(%d) = %v, want %v", off, got, want)
		}
	}
	if next.Context().Err() != nil || b.Owned() != 1 {
		t.Fatal("the new assignment's tracker is not live")
	}
	// A second assignment of the partition forgets the memory: it was
	// handed over once.
	b.End("t", []int32{0}, ErrRevoked)
	if !errors.Is(context.Cause(next.Context()), ErrRevoked) || b.Owned() != 0 {
		t.Fatalf("cause %v, owned %d", context.Cause(next.Context()), b.Owned())
	}
}

// TestTrackerContextEndsWithBook: a tracker's Context ends with the book's
// (shutdown), so requests of every partition stop.
// Mutation caught: newTracker deriving from context.Background().
func TestTrackerContextEndsWithBook(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := NewBook(ctx)
	b.Assign("t", []int32{0, 1})
	cancel()
	for _, p := range []int32{0, 1} {
		if err := b.Tracker("t", p).Context().Err(); !errors.Is(err, context.Canceled) {
			t.Fatalf("partition %d: Context().Err() = %v after the book's context ended", p, err)
		}
	}
}
