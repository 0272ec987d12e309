package offsets

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// op is one step of a scenario: track or settle an offset, or close.
type op struct {
	kind   byte // 't' track, 's' settle, 'c' close, 'r' revoke, 'm' mark committed
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
					tr.MarkCommitted(Offset{At: o.offset})
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

// model is the naive reference: a set of tracked offsets and of settled ones.
type model struct {
	tracked []int64
	settled map[int64]bool
	closed  bool
}

func (m *model) committable() (int64, bool) {
	if m.closed || len(m.tracked) == 0 {
		return 0, false
	}
	for _, o := range m.tracked {
		if !m.settled[o] {
			return o, true
		}
	}
	return m.tracked[len(m.tracked)-1] + 1, true
}

// TestTrackerModel drives random operations against the tracker and the
// naive model and checks they agree, and that the committable offset never
// passes an unsettled record.
func TestTrackerModel(t *testing.T) {
	for run := range 1000 {
		rng := rand.New(rand.NewPCG(uint64(run), 7))
		tr := NewTracker("t", 0)
		m := &model{settled: map[int64]bool{}}
		next := int64(rng.IntN(10))
		for step := range 200 {
			switch r := rng.IntN(100); {
			case r < 45:
				ok := tr.Track(next, 0)
				if ok == m.closed {
					t.Fatalf("run %d step %d: Track(%d) = %v with closed=%v", run, step, next, ok, m.closed)
				}
				if ok {
					m.tracked = append(m.tracked, next)
				}
				next += 1 + int64(rng.IntN(3)) // gaps
			case r < 95:
				if len(m.tracked) == 0 {
					continue
				}
				o := m.tracked[rng.IntN(len(m.tracked))]
				want := !m.closed && !m.settled[o]
				if got := tr.Settle(o); got != want {
					t.Fatalf("run %d step %d: Settle(%d) = %v, want %v", run, step, o, got, want)
				}
				if want {
					m.settled[o] = true
				}
			case r < 99:
				if c, ok := tr.Committable(); ok {
					tr.MarkCommitted(c)
				}
			default:
				tr.Close()
				m.closed = true
			}
			want, wantOK := m.committable()
			got, ok := tr.Committable()
			if ok {
				if !wantOK || got.At != want {
					t.Fatalf("run %d step %d: Committable() = %d, model %d (%v)", run, step, got.At, want, wantOK)
				}
				for _, o := range m.tracked {
					if o < got.At && !m.settled[o] {
						t.Fatalf("run %d step %d: committable %d passes unsettled %d", run, step, got.At, o)
					}
				}
			}
		}
	}
}

// FuzzTracker checks the invariant on operation sequences from the fuzzer:
// the committable offset never passes a tracked record that is unsettled.
func FuzzTracker(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 200, 201, 4})
	f.Add([]byte{0, 0, 0, 129, 255, 128})
	f.Fuzz(func(t *testing.T, ops []byte) {
		tr := NewTracker("t", 0)
		var tracked []int64
		settled := map[int64]bool{}
		next := int64(0)
		for _, b := range ops {
			switch {
			case b < 128:
				if tr.Track(next, 0) {
					tracked = append(tracked, next)
				}
				next += int64(b%4) + 1
			case b < 250:
				if len(tracked) == 0 {
					continue
				}
				o := tracked[int(b)%len(tracked)]
				if tr.Settle(o) {
					if settled[o] {
						t.Fatalf("Settle(%d) accepted twice", o)
					}
					settled[o] = true
				}
			case b < 254:
				if c, ok := tr.Committable(); ok {
					tr.MarkCommitted(c)
				}
			default:
				tr.Close()
			}
			if c, ok := tr.Committable(); ok {
				for _, o := range tracked {
					if o < c.At && !settled[o] {
						t.Fatalf("committable %d passes unsettled %d", c.At, o)
					}
				}
			}
		}
	})
}

func TestBookReassignGetsNewTracker(t *testing.T) {
	b := NewBook()
	b.Assign("t", []int32{0, 1})
	old := b.Tracker("t", 0)
	if !old.Track(10, 0) {
		t.Fatal("Track refused on a live tracker")
	}
	revoked := b.Revoke("t", []int32{0})
	if len(revoked) != 1 || revoked[0] != old {
		t.Fatalf("Revoke returned %v", revoked)
	}
	if b.Tracker("t", 0).Track(11, 0) {
		t.Fatal("a revoking tracker accepted a new record")
	}
	old.Close()
	b.Assign("t", []int32{0})
	fresh := b.Tracker("t", 0)
	if fresh == old {
		t.Fatal("re-assigned partition reused the old tracker")
	}
	if old.Settle(10) {
		t.Fatal("a late ack was accepted by the closed tracker")
	}
	if _, ok := fresh.Committable(); ok {
		t.Fatal("the late ack made the new tracker committable")
	}
	got := b.Committable()
	if _, ok := got["t"][0]; ok {
		t.Fatalf("Committable includes the fresh, empty partition: %v", got)
	}
}

func TestBookLostCommitsNothing(t *testing.T) {
	b := NewBook()
	b.Assign("t", []int32{3})
	tr := b.Tracker("t", 3)
	tr.Track(1, 0)
	tr.Settle(1)
	b.Lost("t", []int32{3})
	if got := b.Committable(); len(got) != 0 {
		t.Fatalf("Committable after Lost = %v, want nothing", got)
	}
	if b.Tracker("t", 3) != nil {
		t.Fatal("lost partition still has a tracker")
	}
}

func TestBookCommittableAndMark(t *testing.T) {
	b := NewBook()
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
	want := map[string]map[int32]Offset{"a": {0: {6, 2}, 1: {6, 2}}, "b": {0: {6, 2}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Committable() = %v, want %v", got, want)
	}
	b.MarkCommitted("a", 0, Offset{At: 6})
	got = b.Committable()
	if _, ok := got["a"][0]; ok {
		t.Fatalf("a/0 reported again after MarkCommitted: %v", got)
	}
	if b.Pending() != 3 {
		t.Fatalf("Pending() = %d, want 3", b.Pending())
	}
}

func TestDrained(t *testing.T) {
	tr := NewTracker("t", 0)
	tr.Track(1, 0)
	tr.Track(2, 0)
	done := make(chan error, 1)
	go func() { done <- tr.Drained(context.Background()) }()
	tr.Settle(2)
	tr.Settle(1)
	if err := <-done; err != nil {
		t.Fatalf("Drained() = %v", err)
	}
	tr.Track(3, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Drained(ctx); err == nil {
		t.Fatal("Drained with a pending record and a cancelled ctx returned nil")
	}
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
