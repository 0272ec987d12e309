package chaos

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// want is what must become of a produced record, from the harness's own
// reading of the configuration it wrote.
type want uint8

const (
	wantDeliver want = iota // to its site
	wantFilter              // dropped on purpose (no integration)
	wantDLQ                 // a poison pill, or an event the collector rejects
)

func (w want) String() string {
	return [...]string{"deliver", "filter", "dlq"}[w]
}

// pos is a record's place in a topic.
type pos struct {
	p   int32
	off int64
}

// delivery is one acknowledgement of an event by the collector.
type delivery struct {
	seq    int64
	member string
}

// record is one produced record and everything that became of it.
type record struct {
	pos
	id   string // event id; "" for a poison pill
	want want
	site int64
	ts   time.Time

	deliveries []delivery
	dlqSeq     []int64 // kfake: DLQ writes seen by the broker
	parkSeq    []int64 // kfake: parking writes seen by the broker
	dlqAt      []pos   // where it is in the DLQ topic (read at the end)
	parkAt     []pos   // where it is in the parking topic (read at the end)
	dlqReason  string
	// rewound is the seq of an offsets reset that made the record
	// unsettled again (it must be settled again after it); 0 if none.
	rewound int64
	// gone: deleted by retention before anything read it.
	gone bool
}

// commitObs is one observed commit: a commit request (kfake) or a sample
// of the committed offsets (both brokers).
type commitObs struct {
	seq     int64
	group   string
	topic   string
	offsets map[int32]int64
	// request: an OffsetCommit request seen by kfake; else a sample.
	request bool
	gen     int32
	member  string
	// stale: a request from an older generation than the group's, which
	// the broker refuses.
	stale bool
	// ends are the DLQ and parking topics' end offsets read right after a
	// sample: a dead-lettered or parked record below them was
	// acknowledged before the sample.
	ends map[string]map[int32]int64
}

// rewind is an operator's offsets reset: records at or after offsets must
// be settled again.
type rewind struct {
	seq     int64
	offsets map[int32]int64
}

// Ledger is one run's account. It is safe for concurrent use; seq orders
// every event it records (an acknowledgement, a DLQ write, a commit).
type Ledger struct {
	seq atomic.Int64

	mu        sync.Mutex
	topic     string
	dlqTopic  string
	parkTopic string
	group     string
	recs      []*record
	byID      map[string]*record
	byPos     map[pos]*record
	// parkRecs maps a parking topic position to the record parked there;
	// dlqFromPark the parked records the parking consumer dead-lettered.
	parkRecs      map[pos]*record
	dlqFromPark   map[pos][]int64 // kfake seqs
	dlqFromParkAt map[pos][]pos
	unknownHits   int // acknowledged events nobody produced
	commits       []commitObs
	rewinds       []rewind
	requests      int // commit requests seen (kfake)
	samples       int
	// staleDeliveries counts events a member delivered while a Stale
	// window was open for it.
	staleOpen       map[string]bool
	staleDeliveries int
}

func newLedger(topic, dlqTopic, parkTopic, group string) *Ledger {
	return &Ledger{topic: topic, dlqTopic: dlqTopic, parkTopic: parkTopic, group: group,
		byID: map[string]*record{}, byPos: map[pos]*record{}, parkRecs: map[pos]*record{},
		dlqFromPark: map[pos][]int64{}, dlqFromParkAt: map[pos][]pos{}, staleOpen: map[string]bool{}}
}

func (l *Ledger) tick() int64 { return l.seq.Add(1) }

func (l *Ledger) add(r *record) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	l.byPos[r.pos] = r
	if r.id != "" {
		l.byID[r.id] = r
	}
}

// Delivered records that the collector acknowledges ids for member; it is
// called before the collector answers.
func (l *Ledger) Delivered(member string, ids []string) {
	s := l.tick()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, id := range ids {
		r, ok := l.byID[id]
		if !ok {
			l.unknownHits++
			continue
		}
		r.deliveries = append(r.deliveries, delivery{seq: s, member: member})
		if l.staleOpen[member] {
			l.staleDeliveries++
		}
	}
}

// SetStale opens or closes member's stale window: events it delivers
// meanwhile are counted as delivered by a member that lost its partitions.
func (l *Ledger) SetStale(member string, open bool) {
	l.mu.Lock()
	l.staleOpen[member] = open
	l.mu.Unlock()
}

// sawWrite records a DLQ or parking write as the broker received it (kfake),
// from the source position its headers name.
func (l *Ledger) sawWrite(topic, srcTopic string, src pos) {
	s := l.tick()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case srcTopic == l.topic:
		r := l.byPos[src]
		if r == nil {
			return
		}
		if topic == l.dlqTopic {
			r.dlqSeq = append(r.dlqSeq, s)
		} else {
			r.parkSeq = append(r.parkSeq, s)
		}
	case srcTopic == l.parkTopic && topic == l.dlqTopic:
		l.dlqFromPark[src] = append(l.dlqFromPark[src], s)
	}
}

// sawCommit records a commit request or sample.
func (l *Ledger) sawCommit(o commitObs) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.commits = append(l.commits, o)
	if o.request {
		l.requests++
	} else {
		l.samples++
	}
}

// Rewind records an offsets reset: records of the topic at or after
// offsets are unsettled again.
func (l *Ledger) Rewind(offsets map[int32]int64) {
	s := l.tick()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rewinds = append(l.rewinds, rewind{seq: s, offsets: offsets})
	for _, r := range l.recs {
		if o, ok := offsets[r.p]; ok && r.off >= o {
			r.rewound = s
		}
	}
}

// Gone marks the records of partition p below off as deleted by retention
// before anything read them.
func (l *Ledger) Gone(p int32, from, to int64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.p == p && r.off >= from && r.off < to {
			r.gone = true
			n++
		}
	}
	return n
}

// sawDLQRecord and sawParkRecord record what the DLQ and parking topics
// hold, read at the end of a run.
func (l *Ledger) sawDLQRecord(at pos, srcTopic string, src pos, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch srcTopic {
	case l.topic:
		if r := l.byPos[src]; r != nil {
			r.dlqAt = append(r.dlqAt, at)
			r.dlqReason = reason
		}
	case l.parkTopic:
		l.dlqFromParkAt[src] = append(l.dlqFromParkAt[src], at)
		if r := l.parkRecs[src]; r != nil {
			r.dlqAt = append(r.dlqAt, at)
			r.dlqReason = reason
		}
	}
}

func (l *Ledger) sawParkRecord(at pos, src pos) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.byPos[src]; r != nil {
		r.parkAt = append(r.parkAt, at)
		l.parkRecs[at] = r
	}
}

// Counts is one run's ledger.
type Counts struct {
	Produced      int // records produced
	Delivered     int // unique events acknowledged
	Duplicates    int // acknowledgements beyond the first of an event
	DLQ           int // records in the DLQ (unique)
	Parked        int // records that went through the parking topic
	ParkedPending int // parked and not yet delivered
	Filtered      int // filtered on purpose and never sent
	Gone          int // deleted by retention before anything read them
	Lost          int // none of the above
	// Wrong counts records settled otherwise than they must be (a
	// dead-lettered event that must be delivered, a filtered one
	// delivered, …); WrongSample shows some.
	Wrong       int
	WrongSample []string
	LostSample  []string
	Unknown     int // acknowledged events nobody produced
	DLQReasons  map[string]int
	Stale       int // events delivered by a member inside a stale window
	// Commit checks.
	Requests     int // commit requests checked (kfake)
	Samples      int // commit samples checked
	StaleCommits int // requests of an old generation (refused by the broker)
	Violations   []string
}

// Invariant says whether every commit passed only settled records and
// never moved backwards.
func (c Counts) Invariant() bool { return len(c.Violations) == 0 }

// settledAt reports whether r was settled as of observation o.
func settledAt(r *record, o *commitObs, dlqTopic, parkTopic string) bool {
	if r.gone || (r.want == wantFilter && len(r.deliveries) == 0 && len(r.dlqAt) == 0) {
		return true
	}
	from := int64(0)
	if r.rewound != 0 && o.seq > r.rewound {
		from = r.rewound
	}
	in := func(s int64) bool { return s > from && s <= o.seq }
	for _, d := range r.deliveries {
		if in(d.seq) {
			return true
		}
	}
	for _, s := range r.dlqSeq {
		if in(s) {
			return true
		}
	}
	for _, s := range r.parkSeq {
		if in(s) {
			return true
		}
	}
	if o.ends != nil && from == 0 {
		// An end offset the sample could not read (a topic just created,
		// not yet in the admin client's metadata) vouches for nothing,
		// and accuses nothing either.
		for _, at := range r.dlqAt {
			if end, ok := o.ends[dlqTopic][at.p]; !ok || at.off < end {
				return true
			}
		}
		for _, at := range r.parkAt {
			if end, ok := o.ends[parkTopic][at.p]; !ok || at.off < end {
				return true
			}
		}
	}
	return false
}

// Counts closes the books: it checks every commit observed and counts
// what became of every record. Call it once the run has ended and the DLQ
// and parking topics have been read.
func (l *Ledger) Counts() Counts {
	l.mu.Lock()
	defer l.mu.Unlock()
	var c Counts
	c.Requests, c.Samples, c.Unknown, c.Stale = l.requests, l.samples, l.unknownHits, l.staleDeliveries
	wrong := func(format string, args ...any) {
		c.Wrong++
		if len(c.WrongSample) < 5 {
			c.WrongSample = append(c.WrongSample, fmt.Sprintf(format, args...))
		}
	}
	for _, r := range l.recs {
		c.Produced++
		if len(r.parkAt) > 0 {
			c.Parked++
		}
		switch {
		case r.gone:
			c.Gone++
			if len(r.deliveries) > 0 {
				wrong("partition %d offset %d: deleted before it was read, yet delivered", r.p, r.off)
			}
		case len(r.deliveries) > 0:
			c.Delivered++
			c.Duplicates += len(r.deliveries) - 1
			if r.want != wantDeliver {
				wrong("partition %d offset %d (event %s): delivered, but it must be %s", r.p, r.off, r.id, r.want)
			}
		case len(r.dlqAt) > 0:
			c.DLQ++
			if c.DLQReasons == nil {
				c.DLQReasons = map[string]int{}
			}
			c.DLQReasons[r.dlqReason]++
			if r.want != wantDLQ {
				wrong("partition %d offset %d (event %s): dead-lettered (%s), but it must be %s", r.p, r.off, r.id, r.dlqReason, r.want)
			}
		case len(r.parkAt) > 0:
			c.ParkedPending++
		case r.want == wantFilter:
			c.Filtered++
		default:
			c.Lost++
			if len(c.LostSample) < 5 {
				c.LostSample = append(c.LostSample, fmt.Sprintf("partition %d offset %d (event %q, must be %s)", r.p, r.off, r.id, r.want))
			}
		}
	}
	c.Violations, c.StaleCommits = l.checkCommits()
	return c
}

// checkCommits replays every commit observed, in seq order with the
// rewinds: each must pass only records settled by then, and, within one
// kind (requests, samples), never go below the previous one for its
// partition, except across an operator's reset.
func (l *Ledger) checkCommits() (violations []string, stale int) {
	obs := slices.Clone(l.commits)
	sort.SliceStable(obs, func(i, j int) bool { return obs[i].seq < obs[j].seq })
	byPart := map[int32][]*record{}
	for _, r := range l.recs {
		byPart[r.p] = append(byPart[r.p], r)
	}
	for _, rs := range byPart {
		sort.Slice(rs, func(i, j int) bool { return rs[i].off < rs[j].off })
	}
	parkByPart := map[int32][]pos{}
	for at := range l.parkRecs {
		parkByPart[at.p] = append(parkByPart[at.p], at)
	}
	for _, ps := range parkByPart {
		sort.Slice(ps, func(i, j int) bool { return ps[i].off < ps[j].off })
	}
	type key struct {
		request bool
		group   string
		p       int32
	}
	last := map[key]int64{}
	rw := 0
	report := func(format string, args ...any) {
		if len(violations) < 20 {
			violations = append(violations, fmt.Sprintf(format, args...))
		} else if len(violations) == 20 {
			violations = append(violations, "…")
		}
	}
	for i := range obs {
		o := &obs[i]
		for rw < len(l.rewinds) && l.rewinds[rw].seq < o.seq {
			for k := range last {
				if _, ok := l.rewinds[rw].offsets[k.p]; ok && k.group == l.group {
					delete(last, k)
				}
			}
			rw++
		}
		if o.stale {
			stale++
		}
		kind := "commit request"
		if !o.request {
			kind = "committed offset (sampled)"
		}
		for p, c := range o.offsets {
			switch o.topic {
			case l.topic:
				for _, r := range byPart[p] {
					if r.off >= c {
						break
					}
					if !settledAt(r, o, l.dlqTopic, l.parkTopic) {
						who := ""
						if o.request {
							who = fmt.Sprintf(", generation %d", o.gen)
						}
						where := ""
						for _, at := range r.dlqAt {
							where += fmt.Sprintf("; in the DLQ at %d/%d", at.p, at.off)
							if end, ok := o.ends[l.dlqTopic][at.p]; ok {
								where += fmt.Sprintf(", the DLQ's end then %d", end)
							}
						}
						report("%s %d for partition %d (group %s%s) passes offset %d (event %q, must be %s%s), not settled then",
							kind, c, p, o.group, who, r.off, r.id, r.want, where)
						break
					}
				}
			case l.parkTopic:
				for _, at := range parkByPart[p] {
					if at.off >= c {
						break
					}
					r := l.parkRecs[at]
					ok := false
					for _, d := range r.deliveries {
						ok = ok || d.seq <= o.seq
					}
					for _, s := range l.dlqFromPark[at] {
						ok = ok || s <= o.seq
					}
					if o.ends != nil {
						for _, d := range l.dlqFromParkAt[at] {
							end, read := o.ends[l.dlqTopic][d.p]
							ok = ok || !read || d.off < end
						}
					}
					if !ok {
						report("%s %d for parking partition %d (group %s) passes parked offset %d (event %q), not delivered then", kind, c, p, o.group, at.off, r.id)
						break
					}
				}
			}
			if o.stale || (o.request && o.gen < 0) {
				continue
			}
			k := key{o.request, o.group, p}
			if prev, ok := last[k]; ok && c < prev {
				report("%s %d for partition %d (group %s) moved back from %d", kind, c, p, o.group, prev)
			}
			last[k] = max(last[k], c)
		}
	}
	return violations, stale
}
