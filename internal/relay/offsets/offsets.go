// Package offsets decides what atrelay may commit: per partition, the
// highest offset below which every fetched record is settled.
//
// A Tracker belongs to one partition for one assignment. Once its partition
// is revoked or lost it is closed, and a closed tracker refuses every later
// mark, so an acknowledgement that arrives late can never commit for a
// partition this member no longer owns. Nothing else in atrelay computes an
// offset to commit.
package offsets

import (
	"context"
	"sync"
)

// Offset is a committable position: At is the next offset to read (Kafka's
// convention), Epoch the leader epoch of the last record below it, that is of
// the last record consumed and settled, as OffsetCommit's committed leader
// epoch wants it (-1 when no tracked record is below At).
type Offset struct {
	At    int64
	Epoch int32
}

// Tracker tracks the records of one partition of one assignment. It is safe
// for concurrent use. Track, Settle and Committable cost O(1) amortised.
type Tracker struct {
	topic     string
	partition int32

	mu        sync.Mutex
	ring      []slot // offsets tracked and not yet popped, in fetch order
	head, n   int    // ring[head] is the oldest; n slots are used
	unsettled int
	next      int64 // offset after the last tracked record; -1 before
	epoch     int32 // leader epoch of the last record popped as settled; -1 before
	committed int64 // what MarkCommitted last recorded; -1 before
	revoking  bool  // refuses Track, still accepts Settle
	closed    bool  // refuses everything
	drained   chan struct{}
}

type slot struct {
	offset  int64
	epoch   int32
	settled bool
}

// NewTracker returns a tracker for one partition with nothing tracked.
func NewTracker(topic string, partition int32) *Tracker {
	return &Tracker{topic: topic, partition: partition, ring: make([]slot, 64), next: -1, epoch: -1, committed: -1}
}

// Topic returns the tracker's topic.
func (t *Tracker) Topic() string { return t.topic }

// Partition returns the tracker's partition.
func (t *Tracker) Partition() int32 { return t.partition }

// Track registers a fetched record. Offsets must increase (they may have
// gaps: transaction markers, compaction). It returns false, and tracks
// nothing, when the tracker is revoking or closed or the offset is not above
// the last one tracked: such a record is not this assignment's to process.
func (t *Tracker) Track(offset int64, epoch int32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.revoking || t.closed || offset < t.next {
		return false
	}
	if t.n == len(t.ring) {
		t.grow()
	}
	t.ring[(t.head+t.n)%len(t.ring)] = slot{offset: offset, epoch: epoch}
	t.n++
	t.unsettled++
	t.next = offset + 1
	return true
}

func (t *Tracker) grow() {
	ring := make([]slot, 2*len(t.ring))
	for i := range t.n {
		ring[i] = t.ring[(t.head+i)%len(t.ring)]
	}
	t.ring, t.head = ring, 0
}

// Settle marks a tracked record settled: delivered, filtered, or
// dead-lettered. It returns false, and changes nothing, when the tracker is
// closed or the offset is not tracked or already settled.
func (t *Tracker) Settle(offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.n == 0 {
		return false
	}
	// Offsets in the ring are increasing: binary search.
	lo, hi := 0, t.n
	for lo < hi {
		mid := (lo + hi) / 2
		if t.ring[(t.head+mid)%len(t.ring)].offset < offset {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == t.n {
		return false
	}
	s := &t.ring[(t.head+lo)%len(t.ring)]
	if s.offset != offset || s.settled {
		return false
	}
	s.settled = true
	t.unsettled--
	// Pop the settled prefix: the committable offset moves past it, and
	// carries the epoch of the last record popped.
	for t.n > 0 && t.ring[t.head].settled {
		t.epoch = t.ring[t.head].epoch
		t.head = (t.head + 1) % len(t.ring)
		t.n--
	}
	if t.unsettled == 0 && t.drained != nil {
		close(t.drained)
		t.drained = nil
	}
	return true
}

// Committable returns the offset to commit: the lowest unsettled tracked
// offset, or the offset after the last tracked record when all are settled,
// with the leader epoch of the settled record just below it (-1 when none
// is). ok is false when the tracker is closed, nothing was tracked, or nothing
// moved since the last MarkCommitted.
func (t *Tracker) Committable() (o Offset, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.committableLocked()
}

func (t *Tracker) committableLocked() (Offset, bool) {
	if t.closed || t.next < 0 {
		return Offset{}, false
	}
	// Every tracked record below the first unsettled one is popped, so the
	// record just below At is the last one popped.
	o := Offset{At: t.next, Epoch: t.epoch}
	if t.n > 0 {
		o.At = t.ring[t.head].offset
	}
	if o.At <= t.committed {
		return Offset{}, false
	}
	return o, true
}

// MarkCommitted records that o was committed, so Committable reports only
// progress beyond it.
func (t *Tracker) MarkCommitted(o Offset) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.committed = max(t.committed, o.At)
}

// Pending returns how many tracked records are not settled.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.unsettled
}

// Drained waits until no tracked record is pending, or ctx ends (then it
// returns ctx's error).
func (t *Tracker) Drained(ctx context.Context) error {
	t.mu.Lock()
	if t.unsettled == 0 || t.closed {
		t.mu.Unlock()
		return nil
	}
	if t.drained == nil {
		t.drained = make(chan struct{})
	}
	ch := t.drained
	t.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Revoke stops the tracker accepting new records; records already tracked
// may still settle (the bounded drain before a revoke's commit).
func (t *Tracker) Revoke() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revoking = true
}

// Close makes the tracker refuse everything from now on: Track and Settle
// return false and Committable reports nothing. Closing is final.
func (t *Tracker) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.revoking, t.closed = true, true
	if t.drained != nil {
		close(t.drained)
		t.drained = nil
	}
}

// Closed reports whether Close was called.
func (t *Tracker) Closed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closed
}

type key struct {
	topic     string
	partition int32
}

// Book holds the trackers of the current assignment. It is safe for
// concurrent use.
type Book struct {
	mu       sync.Mutex
	trackers map[key]*Tracker
}

// NewBook returns an empty book.
func NewBook() *Book { return &Book{trackers: make(map[key]*Tracker)} }

// Assign gives each partition a new tracker, closing any tracker it had: a
// partition assigned again never reuses the previous assignment's tracker.
func (b *Book) Assign(topic string, partitions []int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range partitions {
		k := key{topic, p}
		if old := b.trackers[k]; old != nil {
			old.Close()
		}
		b.trackers[k] = NewTracker(topic, p)
	}
}

// Revoke removes the partitions from the book and returns their trackers,
// revoking (they accept settlements but no new records). The caller drains
// them, commits, and then closes them.
func (b *Book) Revoke(topic string, partitions []int32) []*Tracker {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*Tracker
	for _, p := range partitions {
		k := key{topic, p}
		if t := b.trackers[k]; t != nil {
			t.Revoke()
			out = append(out, t)
			// Kept in the book until closed, so that the revoke's commit
			// includes them; Committable skips closed trackers.
		}
	}
	return out
}

// Lost closes the partitions' trackers at once and removes them: nothing is
// committed for a lost partition.
func (b *Book) Lost(topic string, partitions []int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range partitions {
		k := key{topic, p}
		if t := b.trackers[k]; t != nil {
			t.Close()
			delete(b.trackers, k)
		}
	}
}

// Tracker returns the live tracker of a partition, or nil when the partition
// is not assigned, is being revoked, or its tracker is closed: nil means no
// new record of the partition is this member's to track.
func (b *Book) Tracker(topic string, partition int32) *Tracker {
	b.mu.Lock()
	t := b.trackers[key{topic, partition}]
	b.mu.Unlock()
	if t == nil || !t.live() {
		return nil
	}
	return t
}

// live reports whether the tracker accepts new records: neither revoking nor
// closed.
func (t *Tracker) live() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.revoking && !t.closed
}

// Committable returns the committable offset of every tracker that moved
// since its last commit, revoking ones included (the revoke's own commit)
// and closed ones excluded. Closed trackers are dropped from the book here.
func (b *Book) Committable() map[string]map[int32]Offset {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out map[string]map[int32]Offset
	for k, t := range b.trackers {
		if t.Closed() {
			delete(b.trackers, k)
			continue
		}
		o, ok := t.Committable()
		if !ok {
			continue
		}
		if out == nil {
			out = make(map[string]map[int32]Offset)
		}
		if out[k.topic] == nil {
			out[k.topic] = make(map[int32]Offset)
		}
		out[k.topic][k.partition] = o
	}
	return out
}

// MarkCommitted records a successful commit of o for a partition, if its
// tracker is still in the book.
func (b *Book) MarkCommitted(topic string, partition int32, o Offset) {
	b.mu.Lock()
	t := b.trackers[key{topic, partition}]
	b.mu.Unlock()
	if t != nil {
		t.MarkCommitted(o)
	}
}
