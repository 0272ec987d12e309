// Package offsets decides what atrelay may commit: per partition, the
// highest offset below which every fetched record is settled.
//
// A Tracker belongs to one partition for one assignment. Once its partition
// is revoked or lost it is closed, and a closed tracker refuses every later
// mark, so an acknowledgement that arrives late can never commit for a
// partition this member no longer owns. Nothing else in atrelay computes an
// offset to commit.
//
// A tracker's Context ends when the tracker closes, with the cause
// (ErrRevoked, ErrLost): work done for the assignment's records (HTTP
// requests, DLQ writes) runs under it and stops when the partition moves.
// What an assignment settled without committing is remembered by the Book
// and handed to the partition's next tracker on this member (Previously), so
// records already delivered are not sent twice. What it settled above its
// committed offset also goes with each commit, as the commit's metadata
// (Offset.Metadata, EncodeMetadata): the partition's next owner, on any
// member, gets it back through Book.Restore.
package offsets

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Why a tracker closed, as context.Cause of its Context. Both wrap
// ErrClosed.
var (
	ErrClosed  = errors.New("offsets: assignment ended")
	ErrRevoked = fmt.Errorf("%w: partition revoked", ErrClosed)
	ErrLost    = fmt.Errorf("%w: partition lost", ErrClosed)
)

// Offset is a committable position: At is the next offset to read (Kafka's
// convention), Epoch the leader epoch of the last record below it, that is of
// the last record consumed and settled, as OffsetCommit's committed leader
// epoch wants it (-1 when no tracked record is below At). Metadata records
// the offsets above At already settled (EncodeMetadata, within
// MetadataBudget), to be committed with At; it is empty in an Offset built
// by hand.
type Offset struct {
	At       int64
	Epoch    int32
	Metadata string
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
	first     int64 // the first tracked offset; -1 before
	next      int64 // offset after the last tracked record; -1 before
	epoch     int32 // leader epoch of the last record popped as settled; -1 before
	committed int64 // what MarkCommitted last recorded; -1 before
	// committedMeta is the metadata committed with committed: a commit at
	// the same offset is due again when what is settled above it changed.
	committedMeta string
	revoking      bool // refuses Track, still accepts Settle
	closed        bool // refuses everything
	drained       chan struct{}

	ctx    context.Context // ends at Close, or with the book's context
	cancel context.CancelCauseFunc
	before *Settled // what earlier assignments, and the commit metadata (Book.Restore), say settled
}

type slot struct {
	offset  int64
	epoch   int32
	settled bool
}

// NewTracker returns a tracker for one partition with nothing tracked.
func NewTracker(topic string, partition int32) *Tracker {
	return newTracker(context.Background(), topic, partition, nil)
}

func newTracker(parent context.Context, topic string, partition int32, before *Settled) *Tracker {
	ctx, cancel := context.WithCancelCause(parent)
	return &Tracker{topic: topic, partition: partition, ring: make([]slot, 64), first: -1, next: -1, epoch: -1, committed: -1,
		ctx: ctx, cancel: cancel, before: before}
}

// Context ends when the tracker closes; context.Cause then says why
// (ErrRevoked, ErrLost, ErrClosed, or the book's context's cause).
func (t *Tracker) Context() context.Context { return t.ctx }

// Previously reports whether offset was settled without being committed:
// by an earlier assignment of this partition on this member, or by its
// previous owner as its commit metadata says (Book.Restore).
func (t *Tracker) Previously(offset int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.before.Contains(offset)
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
	if t.first < 0 {
		t.first = offset
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
// is), and the metadata recording what is settled above it. ok is false
// when the tracker is closed, nothing was tracked, or nothing moved since
// the last MarkCommitted: neither the offset nor its metadata (records
// settled above a record that holds the commit back are news too: the
// partition's next owner skips them).
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
	if o.At < t.committed {
		return Offset{}, false
	}
	o.Metadata = t.metadataLocked(o.At)
	if o.At == t.committed && o.Metadata == t.committedMeta {
		return Offset{}, false
	}
	return o, true
}

// metadataLocked encodes what is settled above at: the runs of settled
// records in the ring, and what earlier owners settled from the next offset
// to track up (those records, once fetched, are settled at once).
func (t *Tracker) metadataLocked(at int64) string {
	// Each entry takes at least two bytes: more runs cannot fit.
	runs := t.runsLocked(nil, MetadataBudget/2)
	if t.before != nil {
		runs = join(append(runs, t.before.from(t.next)...))
	}
	return encodeMetadata(at, runs, MetadataBudget)
}

// MarkCommitted records that o was committed, so Committable reports only
// progress beyond it: a higher offset, or the same one with a different
// metadata. A mark below the last one changes nothing.
func (t *Tracker) MarkCommitted(o Offset) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if o.At >= t.committed {
		t.committed, t.committedMeta = o.At, o.Metadata
	}
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
func (t *Tracker) Close() { t.close(ErrClosed) }

func (t *Tracker) close(cause error) {
	t.mu.Lock()
	t.revoking, t.closed = true, true
	if t.drained != nil {
		close(t.drained)
		t.drained = nil
	}
	t.mu.Unlock()
	t.cancel(cause)
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

// Book holds the trackers of the current assignment, and what ended
// assignments settled without committing. It is safe for concurrent use.
type Book struct {
	ctx      context.Context
	mu       sync.Mutex
	trackers map[key]*Tracker
	settled  map[key]*Settled // of ended assignments, until reassigned
}

// NewBook returns an empty book. Every tracker's Context ends with ctx.
func NewBook(ctx context.Context) *Book {
	return &Book{ctx: ctx, trackers: make(map[key]*Tracker), settled: make(map[key]*Settled)}
}

// Assign gives each partition a new tracker, closing any tracker it had: a
// partition assigned again never reuses the previous assignment's tracker.
// The new tracker knows what the partition's ended assignments settled
// without committing (Previously).
func (b *Book) Assign(topic string, partitions []int32) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range partitions {
		k := key{topic, p}
		if old := b.trackers[k]; old != nil {
			b.endLocked(k, old, ErrRevoked)
		}
		b.trackers[k] = newTracker(b.ctx, topic, p, b.settled[k])
		delete(b.settled, k)
	}
}

// End closes the partitions' trackers with cause (ErrRevoked after a
// revoke's drain and commit, ErrLost) and removes them, remembering what
// each settled without committing. It returns the trackers it closed.
func (b *Book) End(topic string, partitions []int32, cause error) []*Tracker {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*Tracker
	for _, p := range partitions {
		k := key{topic, p}
		if t := b.trackers[k]; t != nil {
			b.endLocked(k, t, cause)
			delete(b.trackers, k)
			out = append(out, t)
		}
	}
	return out
}

func (b *Book) endLocked(k key, t *Tracker, cause error) {
	t.mu.Lock()
	before := t.before
	t.mu.Unlock()
	if s := t.Settled(); s != nil || before != nil {
		b.settled[k] = s.Merge(before)
	}
	t.close(cause)
}

// Restore adds s, the settled offsets a partition's commit metadata records
// (DecodeMetadata), to what the partition's live tracker settles at once
// (Previously), keeping what an ended assignment of this member settled
// too. It reports false, and changes nothing, when the partition has no
// live tracker.
func (b *Book) Restore(topic string, partition int32, s *Settled) bool {
	t := b.Tracker(topic, partition)
	if t == nil || s == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.before = s.Merge(t.before)
	return true
}

// Owned returns how many partitions the book holds live trackers for
// (neither revoking nor closed).
func (b *Book) Owned() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, t := range b.trackers {
		if t.live() {
			n++
		}
	}
	return n
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

// Lost closes the partitions' trackers at once (cause ErrLost) and removes
// them: nothing is committed for a lost partition.
func (b *Book) Lost(topic string, partitions []int32) []*Tracker {
	return b.End(topic, partitions, ErrLost)
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
