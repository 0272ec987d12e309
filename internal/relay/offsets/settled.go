package offsets

import "slices"

// Settled is what one assignment of a partition settled beyond its last
// commit: every offset below a frontier, and some offsets above it. When an
// assignment ends before it can commit (its partition lost, a revoke whose
// commit failed) and the partition comes back to the same member, the
// records it finds in Settled were already delivered, filtered or
// dead-lettered by this member: it settles them again at once instead of
// sending them twice.
type Settled struct {
	from, below int64   // every offset in [from, below) is settled
	above       []int64 // settled offsets above below, increasing
	prev        *Settled
}

// Contains reports whether offset was settled.
func (s *Settled) Contains(offset int64) bool {
	for ; s != nil; s = s.prev {
		if offset >= s.from && offset < s.below {
			return true
		}
		if _, ok := slices.BinarySearch(s.above, offset); ok {
			return true
		}
	}
	return false
}

// Merge returns s, remembering also what prev (an earlier assignment)
// settled. Only one earlier assignment is kept: a partition that keeps
// coming and going without a commit is rare, and memory stays bounded by
// max_buffered_events per partition.
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
	s := &Settled{from: max(t.committed, t.first), below: t.next}
	if t.n > 0 {
		s.below = t.ring[t.head].offset
	}
	for i := range t.n {
		if sl := t.ring[(t.head+i)%len(t.ring)]; sl.settled {
			s.above = append(s.above, sl.offset)
		}
	}
	if s.below <= s.from && len(s.above) == 0 {
		return nil
	}
	return s
}
