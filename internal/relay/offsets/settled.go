package offsets

import (
	"slices"
	"sort"
)

// Settled is a set of offsets of one partition known to be settled beyond
// a commit: what an assignment settled before it ended without committing
// it, or what the partition's commit metadata says its last owner had
// settled above the committed offset (DecodeMetadata). The partition's next
// assignment finds the records in it already delivered, filtered or
// dead-lettered: it settles them again at once instead of sending them
// twice.
//
// A Settled may also hold offsets that are no record (a transaction marker,
// a compacted record between two settled ones): no fetch returns them, so
// holding them costs nothing.
type Settled struct {
	ranges []span // increasing, disjoint
	prev   *Settled
}

// span is the offsets first..last, both included.
type span struct{ first, last int64 }

// Contains reports whether offset was settled.
func (s *Settled) Contains(offset int64) bool {
	for ; s != nil; s = s.prev {
		i := sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].last >= offset })
		if i < len(s.ranges) && s.ranges[i].first <= offset {
			return true
		}
	}
	return false
}

// Merge returns s, remembering also what prev (an earlier assignment, or
// the commit metadata) settled. Only one earlier set is kept: a partition
// that keeps coming and going without a commit is rare, and memory stays
// bounded.
func (s *Settled) Merge(prev *Settled) *Settled {
	if s == nil {
		return prev
	}
	if prev != nil {
		p := *prev
		p.prev = nil
		s.prev = &p
	}
	return s
}

// from returns the ranges of s (and of what it merged) at and above offset,
// clipped to start there, sorted, with overlapping and adjacent ranges
// joined.
func (s *Settled) from(offset int64) []span {
	var out []span
	for ; s != nil; s = s.prev {
		i := sort.Search(len(s.ranges), func(i int) bool { return s.ranges[i].last >= offset })
		for _, r := range s.ranges[i:] {
			out = append(out, span{max(r.first, offset), r.last})
		}
	}
	slices.SortFunc(out, func(a, b span) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		}
		return 0
	})
	return join(out)
}

// join joins overlapping and adjacent ranges of sorted, in place.
func join(sorted []span) []span {
	out := sorted[:0]
	for _, r := range sorted {
		if n := len(out); n > 0 && r.first <= out[n-1].last+1 {
			out[n-1].last = max(out[n-1].last, r.last)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Settled returns what the tracker settled above its last commit, or nil
// when that is nothing. Call it before Close: a closed tracker returns nil.
func (t *Tracker) Settled() *Settled {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.next < 0 {
		return nil
	}
	// Only what this assignment tracked can be known settled: nothing
	// below its first record, nor below what it committed.
	from, below := max(t.committed, t.first), t.next
	if t.n > 0 {
		below = t.ring[t.head].offset
	}
	var s Settled
	if below > from {
		s.ranges = append(s.ranges, span{from, below - 1})
	}
	s.ranges = t.runsLocked(s.ranges, -1)
	if len(s.ranges) == 0 {
		return nil
	}
	return &s
}

// runsLocked appends to out the runs of settled records in the ring, each
// from its first record's offset to its last one's (the offsets between two
// records of a run are no records), stopping after limit runs (limit < 0:
// no limit).
func (t *Tracker) runsLocked(out []span, limit int) []span {
	runs := 0
	in := false
	for i := range t.n {
		sl := t.ring[(t.head+i)%len(t.ring)]
		switch {
		case sl.settled && in:
			out[len(out)-1].last = sl.offset
		case sl.settled:
			if runs == limit {
				return out
			}
			runs++
			in = true
			out = append(out, span{sl.offset, sl.offset})
		default:
			in = false
		}
	}
	return out
}
