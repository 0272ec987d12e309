package chaos

import (
	"strings"
	"testing"
)

// TestLedgerCommitCheck: the replay of commits against the ledger flags a
// commit that passes a record not settled by then (delivered later, or
// never), one that moves back, and accepts what a correct relay does:
// commits behind acknowledgements, DLQ and parking writes, filtered
// records, a refused commit of an old generation, an operator's reset.
//
// Mutations caught: settledAt counting a delivery whatever its seq fails
// "delivered after the commit"; checkCommits not skipping stale requests
// fails "old generation moving back"; Rewind not clearing the backwards
// baseline fails "reset then commit again".
func TestLedgerCommitCheck(t *testing.T) {
	const topic, dlqT, parkT, group = "t", "t.dlq", "t.park", "g"
	type step func(l *Ledger)
	deliver := func(ids ...string) step { return func(l *Ledger) { l.Delivered("m", ids) } }
	commit := func(gen int32, offsets map[int32]int64) step {
		return func(l *Ledger) {
			l.sawCommit(commitObs{seq: l.tick(), group: group, topic: topic, request: true, gen: gen, offsets: offsets})
		}
	}
	stale := func(gen int32, offsets map[int32]int64) step {
		return func(l *Ledger) {
			l.sawCommit(commitObs{seq: l.tick(), group: group, topic: topic, request: true, gen: gen, stale: true, offsets: offsets})
		}
	}
	dlqWrite := func(off int64) step { return func(l *Ledger) { l.sawWrite(dlqT, topic, pos{0, off}) } }
	rewind := func(off int64) step { return func(l *Ledger) { l.Rewind(map[int32]int64{0: off}) } }
	tests := []struct {
		name  string
		steps []step
		want  string // a violation containing this; "" for none
	}{
		{"behind acknowledgements", []step{deliver("a", "b"), commit(1, map[int32]int64{0: 2})}, ""},
		{"delivered after the commit", []step{deliver("a"), commit(1, map[int32]int64{0: 2}), deliver("b")}, "passes offset 1"},
		{"never delivered", []step{commit(1, map[int32]int64{0: 1})}, "passes offset 0"},
		{"filtered and dead-lettered", []step{deliver("a", "b"), dlqWrite(2), commit(1, map[int32]int64{0: 4})}, ""},
		{"DLQ written after the commit", []step{deliver("a", "b"), commit(1, map[int32]int64{0: 3}), dlqWrite(2)}, "passes offset 2"},
		{"moving back", []step{deliver("a", "b"), commit(1, map[int32]int64{0: 2}), commit(1, map[int32]int64{0: 1})}, "moved back from 2"},
		{"old generation moving back", []step{deliver("a", "b"), commit(2, map[int32]int64{0: 2}), stale(1, map[int32]int64{0: 1})}, ""},
		{"reset then commit again", []step{deliver("a", "b"), commit(1, map[int32]int64{0: 2}), rewind(0), deliver("a"), commit(2, map[int32]int64{0: 1})}, ""},
		{"reset, commit before redelivery", []step{deliver("a", "b"), commit(1, map[int32]int64{0: 2}), rewind(0), commit(2, map[int32]int64{0: 1})}, "passes offset 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger(topic, dlqT, parkT, group)
			for i, r := range []struct {
				id string
				w  want
			}{{"a", wantDeliver}, {"b", wantDeliver}, {"", wantDLQ}, {"c", wantFilter}} {
				l.add(&record{pos: pos{0, int64(i)}, id: r.id, want: r.w})
			}
			for _, s := range tt.steps {
				s(l)
			}
			v, _ := l.checkCommits()
			got := strings.Join(v, "\n")
			if (tt.want == "") != (len(v) == 0) || !strings.Contains(got, tt.want) {
				t.Fatalf("violations:\n%s\nwant one containing %q", got, tt.want)
			}
		})
	}
}

// TestLedgerCounts: every record lands in exactly one column, and lost is
// what is left: a deliverable event neither delivered, dead-lettered nor
// parked.
//
// Mutation caught: Counts counting a parked, undelivered record as
// delivered fails the ParkedPending and Delivered figures.
func TestLedgerCounts(t *testing.T) {
	l := newLedger("t", "t.dlq", "t.park", "g")
	for i, r := range []struct {
		id string
		w  want
	}{{"a", wantDeliver}, {"b", wantDeliver}, {"c", wantDeliver}, {"d", wantDeliver}, {"", wantDLQ}, {"f", wantFilter}} {
		l.add(&record{pos: pos{0, int64(i)}, id: r.id, want: r.w})
	}
	l.Delivered("m", []string{"a", "a", "b"})
	l.sawParkRecord(pos{0, 0}, pos{0, 2})
	l.sawDLQRecord(pos{0, 0}, "t", pos{0, 4}, "corrupt")
	c := l.Counts()
	want := Counts{Produced: 6, Delivered: 2, Duplicates: 1, DLQ: 1, Parked: 1, ParkedPending: 1, Filtered: 1, Lost: 1}
	if c.Produced != want.Produced || c.Delivered != want.Delivered || c.Duplicates != want.Duplicates || c.DLQ != want.DLQ ||
		c.Parked != want.Parked || c.ParkedPending != want.ParkedPending || c.Filtered != want.Filtered || c.Lost != want.Lost {
		t.Fatalf("counts %+v, want %+v", c, want)
	}
	if len(c.LostSample) != 1 || !strings.Contains(c.LostSample[0], `"d"`) {
		t.Fatalf("lost: %v", c.LostSample)
	}
}
