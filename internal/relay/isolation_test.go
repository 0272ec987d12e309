package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/bits"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
	"github.com/atrelay/atrelay/sinks/dlq"
	"github.com/atrelay/atrelay/sinks/park"
)

// Failure isolation (issue 14): a bad event among many is found by
// bisection, and a site that rejects everything is paused instead of
// emptying the stream into the dead-letter topic.

var _ relay.IsolationMetrics = (*counter)(nil)

// Bisected, SitePaused and SiteParking make the tests' counter a
// relay.IsolationMetrics: "bisections/<integration>",
// "bisection_requests/<integration>", "paused/<integration>" (1 while
// paused), "pauses/<integration>/<status>", "parking/<integration>" (1
// while parking) and "parkings/<integration>".
func (c *counter) Bisected(_ context.Context, integration string, requests int64) {
	c.mu.Lock()
	c.settled["bisections/"+integration]++
	c.settled["bisection_requests/"+integration] += requests
	c.mu.Unlock()
	c.event()
}

func (c *counter) SitePaused(_ context.Context, integration string, status int, paused bool) {
	c.mu.Lock()
	if paused {
		c.settled["paused/"+integration]++
		c.settled["pauses/"+integration+"/"+strconv.Itoa(status)]++
	} else {
		c.settled["paused/"+integration]--
	}
	c.mu.Unlock()
	c.event()
}

func (c *counter) SiteParking(_ context.Context, integration string, parking bool) {
	c.mu.Lock()
	if parking {
		c.settled["parking/"+integration]++
		c.settled["parkings/"+integration]++
	} else {
		c.settled["parking/"+integration]--
	}
	c.mu.Unlock()
	c.event()
}

// collectSink answers like a collect server: 400 to a request carrying a
// bad event, a site's status to every request of that site while one is
// set, nothing to a site that is down (a request waits, as in the collect
// client's retries, until its context ends or the site is up, then gets
// RetryLater), 204 otherwise. It counts requests per site and deliveries per body,
// and signals each answer on answered.
type collectSink struct {
	mu        sync.Mutex
	bad       map[string]bool
	status    map[*pipeline.Site]int
	sends     map[*pipeline.Site]int
	delivered map[string]int
	answered  chan struct{}
	// down closes a site's channel when the site is up again.
	down map[*pipeline.Site]chan struct{}
	// The first holdN requests of hold wait until all of them arrived.
	hold     *pipeline.Site
	holdN    int
	released chan struct{}
}

// holdFirst makes the first n requests of site wait until n arrived, so
// that n are in flight when the first is answered.
func (s *collectSink) holdFirst(site *pipeline.Site, n int) {
	s.hold, s.holdN, s.released = site, n, make(chan struct{})
}

func newCollectSink(bad ...string) *collectSink {
	s := &collectSink{bad: map[string]bool{}, status: map[*pipeline.Site]int{}, sends: map[*pipeline.Site]int{},
		delivered: map[string]int{}, answered: make(chan struct{}, 1), down: map[*pipeline.Site]chan struct{}{}}
	for _, b := range bad {
		s.bad[b] = true
	}
	return s
}

func (s *collectSink) Send(ctx context.Context, req pipeline.Request) pipeline.Settlement {
	defer func() {
		select {
		case s.answered <- struct{}{}:
		default:
		}
	}()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends[req.Site]++
	if req.Site == s.hold && s.sends[req.Site] <= s.holdN {
		if s.sends[req.Site] == s.holdN {
			close(s.released)
		}
		s.mu.Unlock()
		select {
		case <-s.released:
		case <-ctx.Done():
		}
		s.mu.Lock()
	}
	if up, down := s.down[req.Site]; down {
		s.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-up:
		}
		s.mu.Lock()
		return pipeline.Settlement{Outcome: pipeline.RetryLater, Reason: "http_503", Status: http.StatusServiceUnavailable}
	}
	status := s.status[req.Site]
	for _, h := range req.Hits {
		if status == 0 && s.bad[string(h.Body)] {
			status = http.StatusBadRequest
		}
	}
	if status != 0 {
		return pipeline.Settlement{Outcome: pipeline.Rejected, Reason: pipeline.StatusReason(status), Status: status}
	}
	for _, h := range req.Hits {
		s.delivered[string(h.Body)]++
	}
	return pipeline.Settlement{Outcome: pipeline.Delivered, Status: http.StatusNoContent}
}

func (s *collectSink) setStatus(site *pipeline.Site, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[site] = status
}

// setDown makes site answer nothing until setUp.
func (s *collectSink) setDown(site *pipeline.Site) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down[site] = make(chan struct{})
}

func (s *collectSink) setUp(site *pipeline.Site) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.down[site])
	delete(s.down, site)
}

func (s *collectSink) sent(site *pipeline.Site) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends[site]
}

func (s *collectSink) deliveries() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.delivered)
}

// until waits until cond holds, checking it after every answer of sink,
// every settlement or metric of m and every commit; it fails the test at
// once when bad returns a reason, and after waitCtx's deadline.
func until(t *testing.T, what string, sink *collectSink, m *counter, cond func() bool, bad func() string) {
	t.Helper()
	ctx := waitCtx(t)
	for !cond() {
		if bad != nil {
			if why := bad(); why != "" {
				t.Fatalf("waiting for %s: %s", what, why)
			}
		}
		select {
		case <-sink.answered:
		case <-m.events:
		case <-m.commits:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// deadLettered returns the values of the n records in the dead-letter
// topic with their reason and status headers.
func (s *stubTopic) deadLettered(t *testing.T, n int) map[string]string {
	t.Helper()
	out := map[string]string{}
	if n == 0 {
		return out
	}
	for _, r := range s.k.ReadAll(t, s.topic+".dlq", n) {
		h := headers(r)
		out[string(r.Value)] = h[dlq.HeaderReason] + "/" + h[dlq.HeaderHTTPStatus]
	}
	return out
}

// TestBisectIsolatesRejectedEvents: one visitor's 20 events go in one
// request; the collector answers 400 to any request carrying one of the
// bad events. Exactly the bad events are dead-lettered (reason http_400),
// every other one is delivered once, the bisection takes at most 2n-1
// requests (exactly that when every event is bad), at most 2·⌈log2 n⌉+1
// for one bad event, and it is counted with the requests it sent.
// Mutations caught (each applied once, seen failing, reverted):
// bisects() returning false (today's behaviour: the whole request is
// dead-lettered, 20 records in the DLQ); halves() splitting off one event
// at a time (mid := 1: one bad event takes 19 requests, above 11); halves()
// with mid := len(req.Hits) (the older half is the whole request: an
// endless bisection overflows the stack); send() not calling Bisected (the
// metric stays at 0).
func TestBisectIsolatesRejectedEvents(t *testing.T) {
	const n = 20
	tests := []struct {
		name     string
		bad      []int // offsets of the bad events
		onReject pipeline.RejectPolicy
		// maxSends bounds the requests; exact says it is also the count.
		maxSends int
		exact    bool
	}{
		{"one bad event", []int{13}, "", 2*bits.Len(n-1) + 1, false},
		{"first and last", []int{0, n - 1}, "", 2*n - 1, false},
		{"three bad events", []int{2, 9, 15}, pipeline.RejectPause, 2*n - 1, false},
		// Every leaf is rejected: a storm with on_reject pause; dlq
		// dead-letters them all.
		{"every event bad", func() []int {
			var all []int
			for i := range n {
				all = append(all, i)
			}
			return all
		}(), pipeline.RejectDLQ, 2*n - 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStubTopic(t, 1)
			s.produce(t, 1, 0, n)
			site := &pipeline.Site{Integration: "bisect", ID: 7, Endpoint: "http://127.0.0.1/event", OnReject: tc.onReject}
			var bad []string
			for _, i := range tc.bad {
				bad = append(bad, value(0, i))
			}
			sink := newCollectSink(bad...)
			// One visitor: the batch, flushed at n events, is one request.
			stages := stagesFunc(func(_ context.Context, h *pipeline.Hit) error {
				h.Site, h.IDClient = site, "visitor"
				h.Body = append(h.Body[:0], h.Event.EventID...)
				return nil
			})
			m := newCounter()
			stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{stages: stages, sink: sink, metrics: m,
				batch: batch.Config{MaxEvents: n, MaxBytes: 1 << 20, Linger: time.Hour}}))
			s.waitCommitted(t, m, map[int32]int64{0: n})
			stop()

			dead := s.deadLettered(t, len(bad))
			if got := slices.Sorted(maps.Keys(dead)); !slices.Equal(got, slices.Sorted(slices.Values(bad))) {
				t.Errorf("dead-lettered %v, want exactly %v", got, bad)
			}
			for v, why := range dead {
				if why != "http_400/400" {
					t.Errorf("%s dead-lettered as %s, want http_400/400", v, why)
				}
			}
			if got := m.get(pipeline.Rejected.String(), "http_400"); got != int64(len(bad)) {
				t.Errorf("dlq http_400 settled %d, want %d", got, len(bad))
			}
			delivered := sink.deliveries()
			for i := range n {
				v, want := value(0, i), 1
				if slices.Contains(tc.bad, i) {
					want = 0
				}
				if delivered[v] != want {
					t.Errorf("%s delivered %d times, want %d", v, delivered[v], want)
				}
			}
			sends := sink.sent(site)
			if sends > tc.maxSends || tc.exact && sends != tc.maxSends {
				t.Errorf("%d requests for %d events with %d bad, want at most %d (exactly: %v)", sends, n, len(bad), tc.maxSends, tc.exact)
			}
			if b, r := m.get("bisections", site.Integration), m.get("bisection_requests", site.Integration); b != 1 || r != int64(sends-1) {
				t.Errorf("counted %d bisections sending %d requests, want 1 sending %d", b, r, sends-1)
			}
			if p := m.get("paused", site.Integration); p != 0 {
				t.Errorf("site paused: %d", p)
			}
		})
	}
}

// errorLines returns the log lines at ERROR that contain every sub.
func errorLines(logs string, subs ...string) []string {
	var out []string
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "level=ERROR") && containsAll(line, subs...) {
			out = append(out, line)
		}
	}
	return out
}

// twoSites routes partition 0's records to wrong and partition 1's to good,
// one visitor per record.
func twoSites(wrong, good *pipeline.Site) stagesFunc {
	return func(_ context.Context, h *pipeline.Hit) error {
		h.Site, h.IDClient = good, h.Event.EventID
		if p, _ := parseValue(h.Event.EventID); p == 0 {
			h.Site = wrong
		}
		h.Body = append(h.Body[:0], h.Event.EventID...)
		return nil
	}
}

// TestRejectStormPausesSite: a site answering 404 to everything (a wrong
// site id or path) is paused at its first answer: none of its records is
// dead-lettered (those of the requests in flight at the pause neither),
// one ERROR names it and the status, the paused metric and the readiness
// detail (Sites) say so, and a probe request goes every
// reject_probe_interval; the other
// site, meanwhile, delivers everything and its partition commits its end.
// Once the collector accepts the site's requests again, a probe is
// accepted, the site resumes, every record is delivered once and both
// partitions commit their end.
// Mutations caught (each applied once, seen failing, reverted):
// rejected() returning false (today's behaviour: 30 records dead-lettered,
// the test fails at once); pausesAtOnce() returning false for 404 (19
// records dead-lettered before the storm threshold pauses the site);
// delivered() not resuming the site (the fixed site's records are never
// delivered: time-out); probeRejected() putting the probe's request back
// without scheduling the next probe (no second probe: time-out waiting for
// 3); rejected() pausing again at every rejection while paused (4 ERROR
// lines: one per request in flight at the pause); resumeLocked() not
// taking the site off the readiness detail (Sites() still lists it after
// the fix).
func TestRejectStormPausesSite(t *testing.T) {
	const n = 30
	s := newStubTopic(t, 2)
	s.produce(t, 2, 0, n)
	wrong := &pipeline.Site{Integration: "wrong", ID: 404, Endpoint: "http://127.0.0.1/nowhere"}
	good := &pipeline.Site{Integration: "good", ID: 1, Endpoint: "http://127.0.0.1/event"}
	sink := newCollectSink()
	sink.setStatus(wrong, http.StatusNotFound)
	const concurrency = 4
	sink.holdFirst(wrong, concurrency)
	var logs lockedBuffer
	m := newCounter()
	r := newStubRelay(t, s.k, s.topic, s.group, stub{stages: twoSites(wrong, good), sink: sink, metrics: m,
		logger: slog.New(slog.NewTextHandler(&logs, nil)), concurrency: concurrency})
	started := time.Now()
	stop := runRelay(t, r)
	deadLettered := func() string {
		if d := m.sum(pipeline.Rejected.String()); d != 0 {
			return strconv.FormatInt(d, 10) + " records dead-lettered"
		}
		return ""
	}

	// Paused at once, probed (every probe is a request beyond the
	// delivery.concurrency ones in flight at the pause), and the good
	// site's partition committed to its end meanwhile.
	until(t, "the pause, 3 probes and partition 1's end committed", sink, m, func() bool {
		return m.get("paused", "wrong") >= 1 && sink.sent(wrong) >= concurrency+3 && s.k.Committed(t, s.group, s.topic)[1] == n
	}, deadLettered)
	if c := s.k.Committed(t, s.group, s.topic); c[0] != 0 {
		t.Fatalf("partition 0 committed at %d while its site is paused, want 0", c[0])
	}
	if got := m.get("pauses", "wrong/404"); got != 1 {
		t.Errorf("pauses of wrong by 404 = %d, want 1", got)
	}
	if lines := errorLines(logs.String(), "site paused", "integration=wrong", "status=404"); len(lines) != 1 {
		t.Errorf("%d ERROR lines naming the paused site and its status, want 1:\n%s", len(lines), logs.String())
	}
	if !strings.Contains(logs.String(), "site still paused") {
		t.Errorf("no failed probe logged:\n%s", logs.String())
	}
	// The readiness detail names the paused site, its status and since
	// when.
	if sites := r.Sites(); len(sites) != 1 || sites[0].Integration != "wrong" || sites[0].Group != s.group || !sites[0].Paused ||
		sites[0].Status != http.StatusNotFound || sites[0].PausedSince.Before(started) || sites[0].PausedSince.After(time.Now()) || sites[0].Parking {
		t.Errorf("Sites() = %+v, want wrong paused by 404 since the run began", sites)
	} else if line := sites[0].String(); !strings.Contains(line, "integration wrong (site 404, group "+s.group+"): paused by HTTP 404 since ") {
		t.Errorf("the paused site reads %q", line)
	}

	// The operator fixes the site: the next probe is accepted.
	sink.setStatus(wrong, 0)
	until(t, "the paused site's records delivered and committed", sink, m, func() bool {
		return maps.Equal(s.k.Committed(t, s.group, s.topic), map[int32]int64{0: n, 1: n})
	}, deadLettered)
	stop()
	delivered := sink.deliveries()
	for p := range int32(2) {
		for i := range n {
			if v := value(p, i); delivered[v] != 1 {
				t.Errorf("%s delivered %d times, want once", v, delivered[v])
			}
		}
	}
	if got := m.get("paused", "wrong"); got != 0 {
		t.Errorf("paused gauge of wrong = %d after the fix, want 0", got)
	}
	if sites := r.Sites(); len(sites) != 0 {
		t.Errorf("Sites() = %+v after the fix, want none", sites)
	}
	if lines := errorLines(logs.String(), "site paused"); len(lines) != 1 {
		t.Errorf("%d ERROR lines, want the one of the pause:\n%s", len(lines), logs.String())
	}
	if !strings.Contains(logs.String(), "site resumed") {
		t.Errorf("the resume is not logged:\n%s", logs.String())
	}
	if n := m.abandoned(); n != 0 {
		t.Errorf("%d records released unsettled", n)
	}
}

// TestOnRejectDLQ: with on_reject dlq, a site answering 404 to everything
// is never paused: every record is dead-lettered with reason http_404
// (the behaviour before pausing existed) and the partitions commit their
// end.
// Mutation caught: rejected() ignoring on_reject (the site pauses: the
// test fails at once).
func TestOnRejectDLQ(t *testing.T) {
	const n = 12
	s := newStubTopic(t, 2)
	s.produce(t, 2, 0, n)
	site := &pipeline.Site{Integration: "wrong", ID: 404, Endpoint: "http://127.0.0.1/nowhere", OnReject: pipeline.RejectDLQ}
	sink := newCollectSink()
	sink.setStatus(site, http.StatusNotFound)
	m := newCounter()
	stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{stages: twoSites(site, site), sink: sink, metrics: m}))
	until(t, "every record dead-lettered and committed", sink, m, func() bool {
		return m.committed.Load() > 0 && maps.Equal(s.k.Committed(t, s.group, s.topic), map[int32]int64{0: n, 1: n})
	}, func() string {
		if m.get("paused", "wrong") != 0 {
			return "the site was paused despite on_reject: dlq"
		}
		return ""
	})
	stop()
	if got := m.get(pipeline.Rejected.String(), "http_404"); got != 2*n {
		t.Errorf("dlq http_404 = %d, want %d", got, 2*n)
	}
	for v, why := range s.deadLettered(t, 2*n) {
		if why != "http_404/404" {
			t.Errorf("%s dead-lettered as %s, want http_404/404", v, why)
		}
	}
}

// TestBisectThroughCollectClient is bisection through the real collect
// client (retryablehttp, the service as app.Build assembles it) against an
// httptest collector that answers 400 to every request carrying a marked
// event: the marked events, and only they, are dead-lettered with reason
// http_400; every other event arrives once; the requests stay within
// 2n-1 for the n events sent; the group commits the end, and no commit
// passes an event the collector has not acknowledged.
// Mutation caught: bisects() returning false (whole requests are
// dead-lettered: the DLQ holds more than the marked events, and their
// companions never arrive).
func TestBisectThroughCollectClient(t *testing.T) {
	tests := []struct {
		name                    string
		partitions              int32
		apps                    []string
		events, perVisitor, nth int // every nth event to deliver is marked
	}{
		{"one visitor, one bad event of 20", 1, []string{fixture.AppFitness}, 20, 20, 14},
		{"600 events, every 37th bad", 3, []string{fixture.AppFitness, fixture.AppNews}, 600, 20, 37},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.partitions)
			e.produce(fixture.Generate(fixture.Options{Seed: 14, Events: tc.events, EventsPerVisitor: tc.perVisitor,
				Apps: tc.apps, SandboxShare: -1, NoIDClientShare: -1, OnlyTableEvents: true}), 0)
			// Mark events; they are expected in the DLQ, not at the
			// collector (so that checkCommit lets their offsets pass).
			marked := map[string]bool{}
			sent := 0
			e.mu.Lock()
			for i := range e.records {
				r := &e.records[i]
				if r.eventID == "" || r.want.reason != "" {
					continue
				}
				sent++
				if sent%tc.nth == 0 {
					marked[r.eventID] = true
					r.want.reason = "http_400"
					e.byEvent[r.eventID] = *r
				}
			}
			e.mu.Unlock()
			if len(marked) == 0 {
				t.Fatal("no event marked")
			}
			var requests atomic.Int64
			e.collect.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				body, err := io.ReadAll(r.Body)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				for id := range marked {
					if bytes.Contains(body, []byte(id)) {
						http.Error(w, "event "+id+" is not in the data model", http.StatusBadRequest)
						return
					}
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				e.collector.ServeHTTP(w, r)
			})
			opts, report := e.watchCommits()
			e.start(e.config(2000, 10*time.Second), opts)
			ctx := waitCtx(t)
			// More dead letters than marked events fail the wait at once.
			hitsCtx, fail := context.WithCancelCause(ctx)
			go func() {
				for {
					select {
					case <-hitsCtx.Done():
						return
					case <-e.metrics.events:
						if n := e.metrics.sum(pipeline.Rejected.String()); n > int64(len(marked)) {
							fail(fmt.Errorf("%d records dead-lettered, more than the %d marked events", n, len(marked)))
						}
					}
				}
			}()
			err := e.collector.WaitHits(hitsCtx, e.wantDelivered())
			fail(nil)
			if err != nil {
				t.Fatal(context.Cause(hitsCtx))
			}
			e.waitCommitted(ctx)
			report()

			got := e.delivered()
			for id, r := range e.byEvent {
				want := 1
				if r.want.reason != "" {
					want = 0
				}
				if got[id] != want {
					t.Errorf("event %s (%s) arrived %d times, want %d", id, r.want.reason, got[id], want)
				}
			}
			if n := e.metrics.get(pipeline.Rejected.String(), "http_400"); n != int64(len(marked)) {
				t.Errorf("dlq http_400 = %d, want the %d marked events", n, len(marked))
			}
			for _, d := range e.kafka.ReadAll(t, e.topic+".dlq", len(marked)) {
				h := headers(d)
				p, _ := strconv.Atoi(h[dlq.HeaderPartition])
				off, _ := strconv.ParseInt(h[dlq.HeaderOffset], 10, 64)
				id := ""
				for _, r := range e.records {
					if r.partition == int32(p) && r.offset == off {
						id = r.eventID
					}
				}
				if !marked[id] || h[dlq.HeaderReason] != "http_400" || h[dlq.HeaderHTTPStatus] != "400" {
					t.Errorf("DLQ record of partition %d offset %d (event %q, marked %v) has reason %s status %s, want a marked event, http_400",
						p, off, id, marked[id], h[dlq.HeaderReason], h[dlq.HeaderHTTPStatus])
				}
			}
			if n := int64(sent); requests.Load() > 2*n-1 {
				t.Errorf("%d requests for %d events, want at most %d", requests.Load(), n, 2*n-1)
			}
			if b := e.metrics.get("bisections", "fitness") + e.metrics.get("bisections", "news"); b == 0 {
				t.Error("no bisection counted: no marked event shared a request, the test proves nothing")
			}
			t.Logf("%d events, %d marked, %d requests, %d bisections sending %d requests", sent, len(marked), requests.Load(),
				e.metrics.get("bisections", "fitness")+e.metrics.get("bisections", "news"),
				e.metrics.get("bisection_requests", "fitness")+e.metrics.get("bisection_requests", "news"))
		})
	}
}

// siteFailures are the two ways a site comes to be parked, each with its
// fix: no answer at all, and a reject storm's pause (404).
var siteFailures = []struct {
	name      string
	reason    string
	fail, fix func(*collectSink, *pipeline.Site)
}{
	{"no answer", "no_answer", (*collectSink).setDown, (*collectSink).setUp},
	{"paused by 404", "http_404",
		func(s *collectSink, site *pipeline.Site) { s.setStatus(site, http.StatusNotFound) },
		func(s *collectSink, site *pipeline.Site) { s.setStatus(site, 0) }},
}

// TestParkFailingSite: a site that has failed for longer than park_after
// — answering nothing, or paused by a 404 — is parked: its records (those
// waiting, those in flight, and new ones) are written to the parking topic
// with their origin and settled as parked, so that the main group commits
// its end while the site still fails, and the other site keeps
// delivering. The parking consumer (group <group>.park) holds the parked
// records, uncommitted, while the site fails, and delivers them once it is
// fixed; its first delivery ends the parking (and the pause) in the relay
// too, and the site's new records go direct again. The readiness detail (Sites) names the parking site, why
// and since when, while it parks, and nothing once it answers. Every
// record is delivered once; nothing is dead-lettered or lost.
// Mutations caught (each applied once, seen failing, reverted):
// checkFailing() never parking (partition 0 never commits while the site
// is down: time-out); parkRequest() settling without writing to the
// parking topic (the commit passes records the topic does not hold: the
// read of 20 parked records fails); beforeSend() not holding the requests
// of a parked site (they keep waiting on the down site: time-out);
// delivered() not ending the parking (the site stays parked: time-out);
// parkLocked() not publishing the parking to the readiness detail
// (Sites() shows the 404's pause alone); the parking consumer's delivered()
// not telling the relay (siteAnswered: the site stays parked, the relay
// sending it no probe: park.go).
func TestParkFailingSite(t *testing.T) {
	for _, tc := range siteFailures {
		t.Run(tc.name, func(t *testing.T) {
			const n = 20
			s := newStubTopic(t, 2)
			parkTopic := s.topic + ".park"
			s.k.CreateTopic(t, parkTopic, 1)
			s.produce(t, 2, 0, n)
			down := &pipeline.Site{Integration: "down", ID: 503, Endpoint: "http://127.0.0.1/down"}
			good := &pipeline.Site{Integration: "good", ID: 1, Endpoint: "http://127.0.0.1/event"}
			sink := newCollectSink()
			tc.fail(sink, down)
			var logs lockedBuffer
			m := newCounter()
			r := newStubRelay(t, s.k, s.topic, s.group, stub{stages: twoSites(down, good), sink: sink, metrics: m,
				logger: slog.New(slog.NewTextHandler(&logs, nil)), parkAfter: 50 * time.Millisecond, probe: 20 * time.Millisecond})
			stop := runRelay(t, r)
			failed := func() string {
				if d := m.sum(pipeline.Rejected.String()); d != 0 {
					return strconv.FormatInt(d, 10) + " records dead-lettered"
				}
				if a := m.abandoned(); a != 0 {
					return strconv.FormatInt(a, 10) + " records released unsettled"
				}
				return ""
			}

			// The site fails: its records are parked, and the main group
			// commits its end; the parking group commits nothing.
			until(t, "the failing site's records parked and the main group's end committed", sink, m, func() bool {
				return m.get(pipeline.Parked.String(), tc.reason) == n &&
					maps.Equal(s.k.Committed(t, s.group, s.topic), map[int32]int64{0: n, 1: n})
			}, failed)
			if got := s.k.Committed(t, s.group+relay.ParkGroupSuffix, parkTopic); got[0] != 0 {
				t.Fatalf("the parking group committed %v while the site fails, want nothing", got)
			}
			if p := m.get("parking", "down"); p != 1 {
				t.Fatalf("parking gauge of down = %d, want 1", p)
			}
			// The readiness detail names the parking site, why it parks
			// and since when (and, paused by 404, the pause). The parking
			// consumer may list the site too (paused by the same 404).
			var main []relay.SiteState
			for _, site := range r.Sites() {
				if site.Group == s.group {
					main = append(main, site)
				}
			}
			if len(main) != 1 || main[0].Integration != "down" || !main[0].Parking || main[0].ParkReason != tc.reason ||
				main[0].ParkingSince.IsZero() || main[0].Paused != (tc.reason == "http_404") {
				t.Errorf("Sites() of the main group = %+v, want down parking (%s)", main, tc.reason)
			} else if line := main[0].String(); !strings.Contains(line, "parking its records ("+tc.reason+") since ") {
				t.Errorf("the parking site reads %q", line)
			}
			seen := map[string]bool{}
			for _, r := range s.k.ReadAll(t, parkTopic, n) {
				h := headers(r)
				if h[park.HeaderIntegration] != "down" || h[park.HeaderReason] != tc.reason || h[park.HeaderTopic] != s.topic ||
					h[park.HeaderPartition] != "0" || h[park.HeaderOffset] != strings.TrimPrefix(string(r.Value), "0/") || h[park.HeaderFirstFailure] == "" {
					t.Errorf("parked record %q has headers %v", r.Value, h)
				}
				seen[string(r.Value)] = true
			}
			if len(seen) != n {
				t.Errorf("parking topic holds %d distinct records, want %d", len(seen), n)
			}
			if !strings.Contains(logs.String(), "site parked") {
				t.Errorf("the parking is not logged:\n%s", logs.String())
			}

			// The site is fixed: the parking consumer delivers the parked
			// records, its first delivery ends the parking, and new records
			// of the site go direct.
			tc.fix(sink, down)
			until(t, "the parked records delivered and the parking group's end committed", sink, m, func() bool {
				return s.k.Committed(t, s.group+relay.ParkGroupSuffix, parkTopic)[0] == n
			}, failed)
			// The parking consumer's deliveries told the relay that the
			// site answers: it is neither parked nor paused any more,
			// before any new record of it could go as a probe.
			if p, q := m.get("parking", "down"), m.get("paused", "down"); p != 0 || q != 0 {
				t.Errorf("once the parked records were delivered: parking gauge %d, paused gauge %d, want 0 and 0", p, q)
			}
			if sites := r.Sites(); len(sites) != 0 {
				t.Errorf("Sites() = %+v once the parked records were delivered, want none", sites)
			}
			s.produce(t, 1, n, 2*n)
			until(t, "the parking ended, the new records delivered and committed", sink, m, func() bool {
				return m.get("parking", "down") == 0 && maps.Equal(s.k.Committed(t, s.group, s.topic), map[int32]int64{0: 2 * n, 1: n}) &&
					s.k.Committed(t, s.group+relay.ParkGroupSuffix, parkTopic)[0] == s.k.EndOffsets(t, parkTopic)[0]
			}, failed)
			stop()
			delivered := sink.deliveries()
			for p, to := range map[int32]int{0: 2 * n, 1: n} {
				for i := range to {
					if v := value(p, i); delivered[v] != 1 {
						t.Errorf("%s delivered %d times, want once", v, delivered[v])
					}
				}
			}
			if got := m.get("parkings", "down"); got != 1 {
				t.Errorf("down parked %d times, want once", got)
			}
			if parked := m.get(pipeline.Parked.String(), tc.reason); parked == 2*n {
				t.Errorf("every record of the failing site was parked (%d), none went direct after the parking ended", parked)
			}
			if !strings.Contains(logs.String(), "site unparked") {
				t.Errorf("the end of the parking is not logged:\n%s", logs.String())
			}
		})
	}
}

// TestParkThroughCollectClient is parking through the service as app.Build
// assembles it, with the real collect client (which retries a 503 until its
// request's context ends): one site answers 503 until the other site's
// hits have all arrived; after park_after, its records are parked, the main
// group commits its end while the site is still down, and once it answers
// again the parking consumer delivers every parked event. Every event
// arrives exactly once; nothing is dead-lettered or released unsettled.
// Mutation caught: parkLocked() not ending the site's requests in flight
// (cancelSite not called: the requests stay in the client's retries and
// their partitions' commits wait: time-out).
func TestParkThroughCollectClient(t *testing.T) {
	e := newEnv(t, 3)
	e.kafka.CreateTopic(t, e.topic+".park", 1)
	e.produce(fixture.Generate(fixture.Options{Seed: 15, Events: 400, EventsPerVisitor: 2,
		Apps: []string{fixture.AppFitness, fixture.AppNews}, SandboxShare: -1, NoIDClientShare: -1, OnlyTableEvents: true}), 0)
	news := 0
	for _, r := range e.records {
		if r.want.site == 100002 {
			news++
		}
	}
	var down atomic.Bool
	down.Store(true)
	e.collect.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() && r.URL.Query().Get("s") == "100001" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		e.collector.ServeHTTP(w, r)
	})
	cfg := e.config(2000, 5*time.Second)
	parkAfter := 300 * time.Millisecond
	cfg.Delivery.Relay.ParkAfter, cfg.Delivery.Relay.RejectProbeInterval = &parkAfter, 100*time.Millisecond
	e.start(cfg, app.Options{})
	ctx := waitCtx(t)

	// Down: the other site's hits arrive, the down site's records are
	// parked, and the main group commits its end.
	if err := e.collector.WaitHits(ctx, news); err != nil {
		t.Fatal(err)
	}
	e.waitCommitted(ctx)
	if n := e.metrics.get(pipeline.Parked.String(), "no_answer"); n != int64(e.wantDelivered()-news) {
		t.Errorf("parked %d records, want the down site's %d", n, e.wantDelivered()-news)
	}
	if got := e.collector.Stats().PerSite[100001]; len(got) != 0 {
		t.Fatalf("the down site received hits: %v", got)
	}

	// Up: the parking consumer delivers the parked events.
	down.Store(false)
	if err := e.collector.WaitHits(ctx, e.wantDelivered()); err != nil {
		t.Fatal(err)
	}
	parkGroup := e.group + relay.ParkGroupSuffix
	for {
		if got, end := e.kafka.Committed(t, parkGroup, e.topic+".park"), e.kafka.EndOffsets(t, e.topic+".park"); maps.Equal(got, end) {
			break
		}
		select {
		case <-e.metrics.commits:
		case <-ctx.Done():
			t.Fatalf("the parking group committed %v, want %v", e.kafka.Committed(t, parkGroup, e.topic+".park"), e.kafka.EndOffsets(t, e.topic+".park"))
		}
	}
	got := e.delivered()
	for id, r := range e.byEvent {
		if r.want.reason == "" && got[id] != 1 {
			t.Errorf("event %s (site %d) arrived %d times, want once", id, r.want.site, got[id])
		}
	}
	if n := e.metrics.sum(pipeline.Rejected.String()); n != 0 {
		t.Errorf("%d records dead-lettered", n)
	}
	if n := e.metrics.abandoned(); n != 0 {
		t.Errorf("%d records released unsettled", n)
	}
}

// EnvAcceptanceMinutes turns on the acceptance tests that run at the
// issue's own scale, minutes of real time: set it to 1, with or without
// deploy/kafka/with-broker.sh.
const envAcceptanceMinutes = "ATRELAY_ACCEPTANCE_MINUTES"

// TestParkOutageMinutes is issue 14's parking acceptance at its own scale
// and with the production defaults (commit_interval 1s, backoff 100ms to
// 30s, reject_probe_interval 30s), through the service as app.Build
// assembles it: two sites, one answering 503 for 2 minutes, park_after
// 10s. The healthy site's hits keep arriving (a second wave of events is
// produced a minute in); the main group's committed offsets reach the end
// within park_after + 15 s of the start, and again after the second wave
// while the site is still down; after the recovery, every parked event is
// delivered, both groups end with committed == end, and every event
// arrived exactly once (lost = 0, nothing dead-lettered or released
// unsettled). It logs the figures: the second wave's commit follows its
// production by about a commit interval, since the relay sends a parked
// site no probe of its own (park.go; it took ~30 s, a probe's wait, when
// it did). It takes about 2.5 minutes: it runs only
// with ATRELAY_ACCEPTANCE_MINUTES=1.
// Mutation caught: checkFailing() never parking (the main group's commits
// stay behind the down site's first record until the recovery: "committed
// ... want end offsets" at the first wave).
func TestParkOutageMinutes(t *testing.T) {
	if os.Getenv(envAcceptanceMinutes) == "" {
		t.Skip("minutes of real time: set " + envAcceptanceMinutes + "=1")
	}
	const parkAfter, outage, secondWave = 10 * time.Second, 2 * time.Minute, time.Minute
	e := newEnv(t, 3)
	parkTopic, parkGroup := e.topic+".park", e.group+relay.ParkGroupSuffix
	e.kafka.CreateTopic(t, parkTopic, 1)
	wave := func(seed uint64, events int) {
		e.produce(fixture.Generate(fixture.Options{Seed: seed, Events: events, EventsPerVisitor: 2,
			Apps: []string{fixture.AppFitness, fixture.AppNews}, SandboxShare: -1, NoIDClientShare: -1, OnlyTableEvents: true}), 0)
	}
	healthy := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		n := 0
		for _, r := range e.records {
			if r.want.site == 100002 {
				n++
			}
		}
		return n
	}
	var down atomic.Bool
	down.Store(true)
	e.collect.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() && r.URL.Query().Get("s") == "100001" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		e.collector.ServeHTTP(w, r)
	})
	cfg := e.config(2000, 10*time.Second)
	d := &cfg.Delivery.Relay
	after := parkAfter
	d.ParkAfter, d.RejectProbeInterval, d.CommitInterval = &after, relay.DefaultRejectProbeInterval, relay.DefaultCommitInterval
	d.Backoff = backoff.Config{}
	d.Backoff.Default()

	ctx, cancel := context.WithTimeout(context.Background(), outage+2*time.Minute)
	defer cancel()
	// at waits until d after start, as the scenario's clock: the test
	// checks no state by it.
	at := func(start time.Time, d time.Duration) {
		select {
		case <-time.After(time.Until(start.Add(d))):
		case <-ctx.Done():
			t.Fatal("the scenario ran out of time")
		}
	}
	wave(16, 400)
	start := time.Now()
	e.start(cfg, app.Options{})

	// Down: the healthy site's hits arrive, the down site's records are
	// parked, and the main group commits its end.
	if err := e.collector.WaitHits(ctx, healthy()); err != nil {
		t.Fatal(err)
	}
	healthyIn := time.Since(start)
	e.waitCommitted(ctx)
	endIn := time.Since(start)
	t.Logf("first wave: the healthy site's %d hits in %s; the main group's end committed in %s (park_after %s)",
		healthy(), healthyIn.Round(100*time.Millisecond), endIn.Round(100*time.Millisecond), parkAfter)
	if endIn > parkAfter+15*time.Second {
		t.Errorf("the main group committed its end %s after the start, want within park_after + 15 s = %s", endIn.Round(100*time.Millisecond), parkAfter+15*time.Second)
	}

	// Still down a minute in: a second wave; its healthy hits arrive, the
	// down site's records are parked at once, the main group commits.
	at(start, secondWave)
	wave(17, 200)
	produced := time.Now()
	if err := e.collector.WaitHits(ctx, healthy()); err != nil {
		t.Fatal(err)
	}
	e.waitCommitted(ctx)
	t.Logf("second wave (%s in, site still down): the main group's end committed %s after producing it",
		secondWave, time.Since(produced).Round(100*time.Millisecond))
	if got := e.collector.Stats().PerSite[100001]; len(got) != 0 {
		t.Fatalf("the down site received hits: %v", got)
	}
	parked := e.metrics.get(pipeline.Parked.String(), "no_answer")

	// Up after the outage: the parking consumer delivers every parked
	// event; both groups commit their end.
	at(start, outage)
	down.Store(false)
	recovered := time.Now()
	if err := e.collector.WaitHits(ctx, e.wantDelivered()); err != nil {
		t.Fatal(err)
	}
	deliveredIn := time.Since(recovered)
	for !maps.Equal(e.kafka.Committed(t, parkGroup, parkTopic), e.kafka.EndOffsets(t, parkTopic)) {
		select {
		case <-e.metrics.commits:
		case <-ctx.Done():
			t.Fatalf("the parking group committed %v, want %v", e.kafka.Committed(t, parkGroup, parkTopic), e.kafka.EndOffsets(t, parkTopic))
		}
	}
	e.waitCommitted(ctx)
	t.Logf("recovery after %s: %d parked events delivered %s after it, the parking group's end committed %s after it; test total %s",
		outage, parked, deliveredIn.Round(100*time.Millisecond), time.Since(recovered).Round(100*time.Millisecond), time.Since(start).Round(time.Second))

	got := e.delivered()
	for id, r := range e.byEvent {
		if r.want.reason == "" && got[id] != 1 {
			t.Errorf("event %s (site %d) arrived %d times, want once", id, r.want.site, got[id])
		}
	}
	if want := int64(e.wantDelivered() - healthy()); parked != want {
		t.Errorf("parked %d records, want the down site's %d", parked, want)
	}
	if n := e.metrics.sum(pipeline.Rejected.String()); n != 0 {
		t.Errorf("%d records dead-lettered", n)
	}
	if n := e.metrics.abandoned(); n != 0 {
		t.Errorf("%d records released unsettled", n)
	}
}
