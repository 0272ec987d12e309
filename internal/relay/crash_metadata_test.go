package relay_test

import (
	"context"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/internal/relay/offsets"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/pipeline"
)

// downSink answers like a collector with one site down: the down site's
// requests wait until their context ends (or the site is up again), then
// get RetryLater, as from the collect client's retries; every other request
// is delivered, and each body counted. onGood, when set, runs before a good
// request is answered, with the request's record indexes.
type downSink struct {
	mu        sync.Mutex
	down      *pipeline.Site
	up        chan struct{}
	delivered map[string]int
	onGood    func(indexes []int)
	answered  chan struct{}
}

func newDownSink(down *pipeline.Site) *downSink {
	return &downSink{down: down, up: make(chan struct{}), delivered: map[string]int{}, answered: make(chan struct{}, 1)}
}

func (s *downSink) Send(ctx context.Context, req pipeline.Request) pipeline.Settlement {
	defer func() {
		select {
		case s.answered <- struct{}{}:
		default:
		}
	}()
	s.mu.Lock()
	down, up := req.Site == s.down, s.up
	s.mu.Unlock()
	if down {
		select {
		case <-ctx.Done():
			return pipeline.Settlement{Outcome: pipeline.RetryLater, Reason: "http_503", Status: http.StatusServiceUnavailable}
		case <-up:
		}
	}
	s.mu.Lock()
	var indexes []int
	for _, h := range req.Hits {
		s.delivered[string(h.Body)]++
		_, i := parseValue(string(h.Body))
		indexes = append(indexes, i)
	}
	onGood := s.onGood
	s.mu.Unlock()
	if !down && onGood != nil {
		onGood(indexes)
	}
	return pipeline.Settlement{Outcome: pipeline.Delivered, Status: http.StatusNoContent}
}

// setUp makes the down site answer again.
func (s *downSink) setUp() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.up)
}

func (s *downSink) deliveries() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.delivered)
}

// committedWithMetadata reads partition 0's committed offset and its commit
// metadata.
func committedWithMetadata(t *testing.T, k *testkafka.Cluster, group, topic string) kadm.Offset {
	t.Helper()
	resps, err := k.Admin(t).FetchOffsets(waitCtx(t), group)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := resps.Lookup(topic, 0)
	if !ok || r.Err != nil {
		t.Fatalf("no committed offset for %s/0: %v", topic, r.Err)
	}
	return r.Offset
}

// TestCrashWithSiteDownSendsOnlyTheLastInterval is issue 14's acceptance
// for the settled set in the commit metadata: one partition, one record in
// ten for a site that answers nothing (parking off), the others for a
// healthy site. The down site's first record holds the committed offset at
// 0 while the healthy site's records are delivered and settled above it;
// each commit records them in its metadata. The relay crashes (no final
// commit) while delivering a second batch of records; a new relay on the
// same group reads the metadata and settles those records at once
// (filtered, already_settled) instead of sending them again. The healthy
// site's duplicates are at most the records delivered since the last
// commit (those the last commit's metadata does not hold); without the
// metadata, every healthy record above the committed offset is sent again.
// Both figures are logged.
// Mutations caught: restoreSettled returning at once (the metadata is
// written, never read): the new relay sends every healthy record the first
// one delivered again, 210 duplicates against a bound of 30; withMetadata
// returning ctx unchanged (no metadata written, franz-go writes the member
// id): the first commit's metadata is not atrelay's.
func TestCrashWithSiteDownSendsOnlyTheLastInterval(t *testing.T) {
	const first, second = 200, 100
	s := newStubTopic(t, 1)
	down := &pipeline.Site{Integration: "down", ID: 503, Endpoint: "http://127.0.0.1/down"}
	good := &pipeline.Site{Integration: "good", ID: 1, Endpoint: "http://127.0.0.1/event"}
	stages := oneInTen(down, good)
	sink := newDownSink(down)
	before := newCounter()
	r := newStubRelay(t, s.k, s.topic, s.group, stub{stages: stages, sink: sink, metrics: before})
	killed := make(chan struct{})
	var once sync.Once
	// The crash: inside the collector, once the healthy site received 30
	// records of the second batch, before it answers them.
	var seen atomic.Int64
	sink.onGood = func(indexes []int) {
		n := int64(0)
		for _, i := range indexes {
			if i >= first {
				n++
			}
		}
		if seen.Add(n) >= 30 {
			once.Do(func() {
				relay.Kill(r)
				close(killed)
			})
		}
	}
	s.produce(t, 1, 0, first)
	stop := runRelay(t, r)

	// The first batch: every healthy record delivered, and a commit at 0
	// whose metadata holds them all.
	ctx := waitCtx(t)
	for before.committed.Load() == 0 || !holdsAll(t, committedWithMetadata(t, s.k, s.group, s.topic), first, isGood) {
		select {
		case <-before.commits:
		case <-ctx.Done():
			t.Fatal("no commit's metadata holds the first batch's healthy records")
		}
	}
	s.produce(t, 1, first, first+second)
	select {
	case <-killed:
	case <-ctx.Done():
		t.Fatal("the healthy site never received the second batch")
	}
	stop()

	// What the crash left: the committed offset (the down site's first
	// record) and the records its metadata holds.
	last := committedWithMetadata(t, s.k, s.group, s.topic)
	if last.At != 0 {
		t.Fatalf("committed %d, want 0 (the down site's first record)", last.At)
	}
	held, err := offsets.DecodeMetadata(last.At, last.Metadata)
	if err != nil {
		t.Fatalf("the last commit's metadata %q: %v", last.Metadata, err)
	}
	deliveredBefore := sink.deliveries()
	bound, today := 0, 0
	for i := range first + second {
		if v := value(0, i); isGood(i) && deliveredBefore[v] > 0 {
			today++ // above the committed offset: sent again without the metadata
			if !held.Contains(int64(i)) {
				bound++
			}
		}
	}

	// A new relay on the group, the site up again: it delivers the rest.
	sink.mu.Lock()
	sink.onGood = nil
	sink.mu.Unlock()
	sink.setUp()
	after := newCounter()
	stop = runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{stages: stages, sink: sink, metrics: after}))
	s.waitCommitted(t, after, map[int32]int64{0: first + second})
	stop()
	delivered := sink.deliveries()
	dups := 0
	for i := range first + second {
		v := value(0, i)
		switch n := delivered[v]; {
		case n == 0:
			t.Errorf("%s never delivered", v)
		case n > 1 && isGood(i):
			dups += n - 1
		}
	}
	t.Logf("healthy-site duplicates after the crash: %d; records delivered since the last commit (the bound): %d; without the settled set in the metadata: %d",
		dups, bound, today)
	if dups > bound {
		t.Errorf("%d healthy-site duplicates, above the %d records delivered since the last commit (without the metadata: %d)", dups, bound, today)
	}
	if skipped := after.get(pipeline.Filtered.String(), "already_settled"); skipped != held.Count() {
		t.Errorf("the new relay settled %d records as already_settled, the metadata holds %d", skipped, held.Count())
	}
	if today <= bound {
		t.Errorf("the scenario shows nothing: %d records delivered above the committed offset, %d since the last commit", today, bound)
	}
}

// holdsAll reports whether o's metadata holds the records below n that
// want selects; it fails the test at once when the metadata is not
// atrelay's.
func holdsAll(t *testing.T, o kadm.Offset, n int, want func(int) bool) bool {
	t.Helper()
	set, err := offsets.DecodeMetadata(o.At, o.Metadata)
	if err != nil {
		t.Fatalf("commit at %d with metadata %q: %v", o.At, o.Metadata, err)
	}
	for i := range n {
		if want(i) && !set.Contains(int64(i)) {
			return false
		}
	}
	return true
}

// oneInTen routes record i (value "p/i") to down when i is a multiple of
// ten (isGood false), to good otherwise, one visitor per record.
func oneInTen(down, good *pipeline.Site) stagesFunc {
	return func(_ context.Context, h *pipeline.Hit) error {
		h.Site, h.IDClient = good, h.Event.EventID
		if _, i := parseValue(h.Event.EventID); !isGood(i) {
			h.Site = down
		}
		h.Body = append(h.Body[:0], h.Event.EventID...)
		return nil
	}
}

// isGood reports whether oneInTen routes record i to the healthy site.
func isGood(i int) bool { return i%10 != 0 }
