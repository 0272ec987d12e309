package offsets

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// spans returns the settled ranges of s and what it merged, joined: what
// DecodeMetadata produced, for comparisons.
func spans(s *Settled) []span { return s.from(math.MinInt64) }

// settledOf builds a Settled from first,last pairs.
func settledOf(pairs ...int64) *Settled {
	s := &Settled{}
	for i := 0; i+1 < len(pairs); i += 2 {
		s.ranges = append(s.ranges, span{pairs[i], pairs[i+1]})
	}
	return s
}

// TestEncodeMetadata pins the format and the budget: the set is cut at an
// entry boundary, keeping its low end, and never exceeds the budget.
// Mutation caught: the budget check with >= instead of > (the "exactly the
// budget" case loses its last entry, and the default budget is not filled).
func TestEncodeMetadata(t *testing.T) {
	tests := []struct {
		name      string
		committed int64
		set       *Settled
		budget    int
		want      string
	}{
		{"nothing settled", 100, nil, MetadataBudget, "atrelay1:"},
		{"the format's example", 100, settledOf(103, 105, 109, 109, 112, 140), MetadataBudget, "atrelay1:3+3,3,2+29"},
		{"settled from the committed offset", 100, settledOf(100, 101), MetadataBudget, "atrelay1:0+2"},
		{"below the committed offset left out", 100, settledOf(90, 95, 98, 102, 110, 110), MetadataBudget, "atrelay1:0+3,7"},
		{"adjacent ranges joined", 0, settledOf(1, 2, 3, 4), MetadataBudget, "atrelay1:1+4"},
		{"exactly the budget", 0, settledOf(1, 1, 3, 3), len("atrelay1:1,1"), "atrelay1:1,1"},
		{"cut keeps the low end", 0, settledOf(1, 1, 3, 3, 1000000, 1000000, 1000002, 1000002), len("atrelay1:1,1,9"), "atrelay1:1,1"},
		{"a first entry too long: only the prefix", 0, settledOf(123456, 123456), len("atrelay1:12345"), "atrelay1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := EncodeMetadata(tt.committed, tt.set, tt.budget)
			if got != tt.want {
				t.Fatalf("EncodeMetadata = %q, want %q", got, tt.want)
			}
			if len(got) > tt.budget {
				t.Fatalf("%d bytes, over the budget %d", len(got), tt.budget)
			}
		})
	}
}

// TestEncodeMetadataBudget fills the default budget with the worst case of
// two sites taking turns, one of them down (every other offset settled):
// the metadata stays within MetadataBudget, holds the lowest settled
// offsets without a hole, and nothing it holds was not settled.
func TestEncodeMetadataBudget(t *testing.T) {
	set := &Settled{}
	for o := int64(1001); o < 1001+2*10000; o += 2 {
		set.ranges = append(set.ranges, span{o, o})
	}
	md := EncodeMetadata(1000, set, MetadataBudget)
	if len(md) > MetadataBudget || len(md) < MetadataBudget-2 {
		t.Fatalf("%d bytes, want the budget %d filled", len(md), MetadataBudget)
	}
	got, err := DecodeMetadata(1000, md)
	if err != nil {
		t.Fatal(err)
	}
	r := spans(got)
	for i, s := range r {
		if s != set.ranges[i] {
			t.Fatalf("range %d = %v, want %v: not the low end of the set", i, s, set.ranges[i])
		}
	}
	t.Logf("%d of %d settled offsets fit in %d bytes", len(r), len(set.ranges), len(md))
	if len(r) < 1900 {
		t.Fatalf("only %d offsets fit", len(r))
	}
}

// TestDecodeMetadata: metadata of other tools and malformed metadata are
// errors the caller ignores, never a panic nor a partial set.
// Mutation caught: DecodeMetadata without its overflow check (the two
// "past the largest offset" cases decode to wrapped, negative offsets; the
// fuzz seed 5 too).
func TestDecodeMetadata(t *testing.T) {
	tests := []struct {
		name      string
		committed int64
		md        string
		want      []span
		err       error
	}{
		{"the format's example", 100, "atrelay1:3+3,3,2+29", []span{{103, 105}, {109, 109}, {112, 140}}, nil},
		{"empty set", 100, "atrelay1:", nil, nil},
		{"zero skips join", 0, "atrelay1:0,0+2", []span{{0, 2}}, nil},
		{"franz-go's member id", 5, "kgo-5c1f-4d2e", nil, ErrForeignMetadata},
		{"empty", 5, "", nil, ErrForeignMetadata},
		{"another version", 5, "atrelay2:1", nil, ErrForeignMetadata},
		{"no commit", -1, "atrelay1:1", nil, ErrBadMetadata},
		{"sign", 5, "atrelay1:-1", nil, ErrBadMetadata},
		{"plus sign", 5, "atrelay1:+1", nil, ErrBadMetadata},
		{"zero count", 5, "atrelay1:1+0", nil, ErrBadMetadata},
		{"empty entry", 5, "atrelay1:1,,2", nil, ErrBadMetadata},
		{"trailing comma", 5, "atrelay1:1,", nil, ErrBadMetadata},
		{"letters", 5, "atrelay1:1x", nil, ErrBadMetadata},
		{"range syntax of another format", 5, "atrelay1:3-5", nil, ErrBadMetadata},
		{"two counts", 5, "atrelay1:1+2+3", nil, ErrBadMetadata},
		{"number too large", 5, "atrelay1:99999999999999999999", nil, ErrBadMetadata},
		{"past the largest offset", 5, "atrelay1:9223372036854775800+10", nil, ErrBadMetadata},
		{"overflow across entries", 5, "atrelay1:4611686018427387904,4611686018427387904", nil, ErrBadMetadata},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := DecodeMetadata(tt.committed, tt.md)
			if !errors.Is(err, tt.err) {
				t.Fatalf("DecodeMetadata(%d, %q) error = %v, want %v", tt.committed, tt.md, err, tt.err)
			}
			if err != nil && s != nil {
				t.Fatalf("DecodeMetadata returned a set with the error %v", err)
			}
			if got := spans(s); !slices.Equal(got, tt.want) {
				t.Fatalf("DecodeMetadata(%d, %q) = %v, want %v", tt.committed, tt.md, got, tt.want)
			}
		})
	}
}

// TestMetadataRoundTrip encodes random sets (with gaps of every size,
// above and below the committed offset) and decodes them back: within the
// budget, exactly the set at and above the committed offset; cut by a
// small budget, a low-end part of it.
func TestMetadataRoundTrip(t *testing.T) {
	for run := range 500 {
		rng := rand.New(rand.NewPCG(uint64(run), 3))
		committed := rng.Int64N(1 << 40)
		set := &Settled{}
		o := committed - rng.Int64N(50)
		for range rng.IntN(100) {
			o += 1 + rng.Int64N([]int64{2, 10, 1 << 20}[rng.IntN(3)])
			last := o + rng.Int64N(5)
			set.ranges = append(set.ranges, span{o, last})
			o = last + 1
		}
		want := set.from(committed)
		budget := []int{MetadataBudget, 40 + rng.IntN(200)}[run%2]
		md := EncodeMetadata(committed, set, budget)
		if len(md) > budget {
			t.Fatalf("run %d: %d bytes over the budget %d", run, len(md), budget)
		}
		got, err := DecodeMetadata(committed, md)
		if err != nil {
			t.Fatalf("run %d: DecodeMetadata(%q): %v", run, md, err)
		}
		r := spans(got)
		if budget == MetadataBudget && !slices.Equal(r, want) {
			t.Fatalf("run %d: %q decodes to %v, want %v", run, md, r, want)
		}
		if len(r) > len(want) || !slices.Equal(r, want[:len(r)]) {
			t.Fatalf("run %d: %q decodes to %v, not a low end of %v", run, md, r, want)
		}
	}
}

// FuzzDecodeMetadata: whatever the metadata, DecodeMetadata does not
// panic; what it accepts is increasing, disjoint ranges at or above the
// committed offset, which encode back to metadata that decodes to the same
// set.
func FuzzDecodeMetadata(f *testing.F) {
	for _, s := range []string{"atrelay1:3+3,3,2+29", "atrelay1:", "atrelay1:0,0+2", "kgo-member", "atrelay1:1+0",
		"atrelay1:9223372036854775800+10", "atrelay1:,", "atrelay1:1,+", "atrelay1:18446744073709551616"} {
		f.Add(int64(100), s)
	}
	f.Fuzz(func(t *testing.T, committed int64, md string) {
		s, err := DecodeMetadata(committed, md)
		if err != nil {
			if !errors.Is(err, ErrForeignMetadata) && !errors.Is(err, ErrBadMetadata) {
				t.Fatalf("error %v wraps neither sentinel", err)
			}
			return
		}
		r := spans(s)
		for i, sp := range r {
			if sp.first < committed || sp.last < sp.first || i > 0 && sp.first <= r[i-1].last+1 {
				t.Fatalf("%q: ranges %v not increasing, disjoint and at or above %d", md, r, committed)
			}
		}
		again := EncodeMetadata(committed, s, math.MaxInt)
		s2, err := DecodeMetadata(committed, again)
		if err != nil || !slices.Equal(spans(s2), r) {
			t.Fatalf("%q decodes to %v, encodes to %q, which decodes to %v, %v", md, r, again, spans(s2), err)
		}
	})
}

// TestRestoreAndMetadata follows a partition from one owner to the next
// through the commit metadata: the first owner's commit holds at an
// unsettled record with records settled above it; the next owner restores
// the decoded metadata, settles those records at once when it fetches them
// (Previously), and its own commits keep recording the restored records it
// has not fetched yet, so that a third owner skips them too.
// Mutation caught: metadataLocked leaving out t.before (the second owner's
// metadata forgets 20-29 before it fetched them, and the third owner would
// send them again).
func TestRestoreAndMetadata(t *testing.T) {
	first := NewTracker("t", 0)
	for o := int64(10); o < 30; o++ {
		first.Track(o, 1)
		if o != 10 && o != 15 {
			first.Settle(o)
		}
	}
	c, ok := first.Committable()
	if !ok || c.At != 10 || c.Metadata != "atrelay1:1+4,1+14" {
		t.Fatalf("first owner's commit = %+v, %v; want 10 with 11-14 and 16-29", c, ok)
	}

	b := NewBook(t.Context())
	if b.Restore("t", 0, &Settled{}) {
		t.Fatal("Restore accepted a partition without a tracker")
	}
	b.Assign("t", []int32{0})
	s, err := DecodeMetadata(c.At, c.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Restore("t", 0, s) {
		t.Fatal("Restore refused the live tracker")
	}
	second := b.Tracker("t", 0)
	// It fetches 10..19: 10 and 15 are sent, the others skipped.
	var sent []int64
	for o := int64(10); o < 20; o++ {
		second.Track(o, 2)
		if second.Previously(o) {
			second.Settle(o)
		} else {
			sent = append(sent, o)
		}
	}
	if !slices.Equal(sent, []int64{10, 15}) {
		t.Fatalf("second owner sends %v, want [10 15]", sent)
	}
	c2, ok := second.Committable()
	if !ok || c2.At != 10 || c2.Metadata != "atrelay1:1+4,1+14" {
		t.Fatalf("second owner's commit = %+v, %v; want the same set as the first's", c2, ok)
	}
	second.Settle(10)
	c3, _ := second.Committable()
	if c3.At != 15 || c3.Metadata != "atrelay1:1+14" {
		t.Fatalf("after 10 settled: %+v, want 15 with 16-29", c3)
	}
	third, err := DecodeMetadata(c3.At, c3.Metadata)
	if err != nil {
		t.Fatal(err)
	}
	for o := int64(16); o < 30; o++ {
		if !third.Contains(o) {
			t.Fatalf("the third owner would send %d again", o)
		}
	}
	if third.Contains(15) {
		t.Fatal("the third owner would skip the unsettled 15")
	}
}

// ExampleEncodeMetadata shows the format: committed offset 100, offsets
// 103-105, 109 and 112-140 settled above it.
func ExampleEncodeMetadata() {
	tr := NewTracker("events", 0)
	for o := int64(100); o <= 140; o++ {
		tr.Track(o, 0)
		if o >= 103 && o <= 105 || o == 109 || o >= 112 {
			tr.Settle(o)
		}
	}
	c, _ := tr.Committable()
	fmt.Println(c.At, c.Metadata)
	s, _ := DecodeMetadata(c.At, c.Metadata)
	fmt.Println(s.Contains(104), s.Contains(106), strings.HasPrefix(c.Metadata, MetadataPrefix))
	// Output:
	// 100 atrelay1:3+3,3,2+29
	// true false true
}

// TestCutMetadata: a cut keeps whole entries from the low end, and what it
// keeps decodes to a low end of the set.
// Mutation caught: cutting at budget bytes instead of at the comma before
// (a cut entry "2+2" becomes "2", or "12" becomes "1": a wrong offset).
func TestCutMetadata(t *testing.T) {
	md := "atrelay1:3+3,12,2+29"
	tests := []struct {
		budget int
		want   string
	}{
		{100, md},
		{len(md), md},
		{len(md) - 1, "atrelay1:3+3,12"},
		{len("atrelay1:3+3,12"), "atrelay1:3+3,12"},
		{len("atrelay1:3+3,1"), "atrelay1:3+3"},
		{len("atrelay1:3+3"), "atrelay1:3+3"},
		{len("atrelay1:3+"), "atrelay1:"},
		{len("atrelay1:"), "atrelay1:"},
		{len("atrelay1"), ""},
		{0, ""},
	}
	for _, tt := range tests {
		got := CutMetadata(md, tt.budget)
		if got != tt.want {
			t.Errorf("CutMetadata(%q, %d) = %q, want %q", md, tt.budget, got, tt.want)
		}
		if got == "" {
			continue
		}
		s, err := DecodeMetadata(100, got)
		if err != nil {
			t.Fatalf("CutMetadata(%d) = %q: %v", tt.budget, got, err)
		}
		full, _ := DecodeMetadata(100, md)
		if r, all := spans(s), spans(full); !slices.Equal(r, all[:len(r)]) {
			t.Errorf("CutMetadata(%d) = %v, not a low end of %v", tt.budget, r, all)
		}
	}
}
