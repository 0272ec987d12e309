package relay

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/relay/offsets"
	"github.com/atrelay/atrelay/pipeline"
)

// sender sends each site's requests oldest first, at most concurrency at a
// time per site. Sending in order keeps the committed offset close behind
// delivery: with a slow collector the oldest records are always the next
// to go, so a restart re-sends at most what was in flight. (One goroutine
// per flush racing for a semaphore let new requests overtake old ones, and
// the commit lagged far behind.)
type sender struct {
	r           *Relay
	concurrency int
	probeEvery  time.Duration
	parkAfter   time.Duration // 0: parking is off

	mu     sync.Mutex
	sites  map[*pipeline.Site]*siteQueue
	closed bool
	wg     sync.WaitGroup
}

// siteQueue is one site's FIFO of requests, served by concurrency
// goroutines; while the site is paused (pause.go), by its probe only;
// while it is parked (park.go), by the parking of every request (and a
// probe only when the parking consumer cannot probe the site).
type siteQueue struct {
	r          *Relay
	site       *pipeline.Site
	probeEvery time.Duration

	mu     sync.Mutex
	cond   sync.Cond
	reqs   []pipeline.Request // reqs[head:] are waiting, oldest first
	head   int
	closed bool
	// probeGen numbers the probe timers: only the latest one's tick
	// counts (probeTick).
	probeGen uint64
	pause
	parkState
}

func newSender(r *Relay, concurrency int) *sender {
	s := &sender{r: r, concurrency: max(concurrency, 1), probeEvery: r.cfg.Delivery.RejectProbeInterval,
		sites: map[*pipeline.Site]*siteQueue{}}
	if r.park != nil {
		s.parkAfter = r.park.after
	}
	return s
}

// enqueue is the batcher's flush callback: it queues a site's requests and
// returns at once.
func (s *sender) enqueue(site *pipeline.Site, reqs []pipeline.Request) {
	q := s.queue(site)
	if q == nil {
		// Closed: shutdown has passed its deadline; release the records.
		for _, req := range reqs {
			s.r.abandonHits(req.Hits, "shutdown")
		}
		return
	}
	q.mu.Lock()
	q.reqs = append(q.reqs, reqs...)
	q.mu.Unlock()
	for range reqs {
		q.cond.Signal()
	}
}

func (s *sender) queue(site *pipeline.Site) *siteQueue {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	q := s.sites[site]
	if q == nil {
		q = &siteQueue{r: s.r, site: site, probeEvery: s.probeEvery}
		q.cond.L = &q.mu
		if s.parkAfter > 0 {
			q.parkAfter = s.parkAfter
			q.siteCtx, q.cancelSite = context.WithCancel(s.r.deliverCtx)
		}
		s.sites[site] = q
		if s.r.main != nil {
			s.r.main.park.track(site, q)
		}
		for range s.concurrency {
			s.wg.Go(func() {
				for {
					req, how, ok := q.pop()
					switch {
					case !ok:
						return
					case how == parkIt:
						s.r.parkRequest(q, req)
					default:
						s.r.send(q, req, how == probeIt)
					}
				}
			})
		}
	}
	return q
}

// What a popped request is for.
type use uint8

const (
	sendIt  use = iota // send it
	probeIt            // send it as the paused or parked site's probe
	parkIt             // write its records to the parking topic
)

// pop returns the oldest request, waiting for one, and what it is for;
// false once the queue is closed and empty. While the site is paused it
// waits for the probe to be due, and returns one request at a time as the
// probe; while it is parked, it returns every request to be parked (the
// probe, when due, only while the parking consumer cannot probe: park.go).
func (q *siteQueue) pop() (req pipeline.Request, how use, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.closed && (q.head == len(q.reqs) || q.paused && !q.parking && !q.probeDue) {
		q.cond.Wait()
	}
	if q.head == len(q.reqs) {
		return pipeline.Request{}, sendIt, false
	}
	switch {
	case q.closed || !q.paused && !q.parking:
	case q.probeDue:
		q.probeDue, how = false, probeIt
	default:
		how = parkIt
	}
	req = q.reqs[q.head]
	q.reqs[q.head] = pipeline.Request{}
	q.head++
	if q.head == len(q.reqs) {
		q.reqs, q.head = q.reqs[:0], 0
	}
	return req, how, true
}

// purge drops, from every queued request, the hits of partitions whose
// assignment ended, and releases them at once: a revoked or lost
// partition's records must neither be sent by this member nor hold its
// buffer.
func (s *sender) purge() {
	s.mu.Lock()
	queues := make([]*siteQueue, 0, len(s.sites))
	for _, q := range s.sites {
		queues = append(queues, q)
	}
	s.mu.Unlock()
	for _, q := range queues {
		var dropped []*pipeline.Hit
		q.mu.Lock()
		kept := q.reqs[:q.head]
		for _, req := range q.reqs[q.head:] {
			live := req.Hits[:0]
			for _, h := range req.Hits {
				if itemOf(h).tr.Context().Err() != nil {
					dropped = append(dropped, h)
				} else {
					live = append(live, h)
				}
			}
			if len(live) > 0 {
				req.Hits = live
				kept = append(kept, req)
			}
		}
		clear(q.reqs[len(kept):])
		q.reqs = kept
		q.mu.Unlock()
		for _, h := range dropped {
			it := itemOf(h)
			s.r.abandon(it, endReason(it.tr))
		}
	}
}

// close stops the senders once their queues are empty; deliverCtx has
// ended by then, so what remains is released without being sent.
func (s *sender) close() {
	s.mu.Lock()
	s.closed = true
	for _, q := range s.sites {
		q.mu.Lock()
		q.closed = true
		if q.timer != nil {
			q.timer.Stop()
		}
		if q.watchdog != nil {
			q.watchdog.Stop()
		}
		if q.cancelSite != nil {
			q.cancelSite()
		}
		q.mu.Unlock()
		q.cond.Broadcast()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// send delivers one request and settles its records: delivered, or
// dead-lettered when rejected. A request rejected with 400 is bisected
// first (bisect.go), and the records of a paused site wait in its queue
// (pause.go); probe says the site is paused and req is its probe.
func (r *Relay) send(q *siteQueue, req pipeline.Request, probe bool) {
	var requests int64
	r.deliver(q, req, probe, &requests)
	if requests > 0 {
		r.isolation().Bisected(r.deliverCtx, req.Site.Integration, requests)
	}
}

// deliver sends req until it has an answer and acts on it; it adds to
// bisected the requests a bisection sent.
func (r *Relay) deliver(q *siteQueue, req pipeline.Request, probe bool, bisected *int64) {
	s, ok := r.answer(q, &req, probe)
	switch {
	case !ok:
		if probe {
			q.probeLost()
		}
		return
	case s.Outcome == pipeline.Delivered:
		q.delivered(s)
		now := time.Now()
		for _, h := range req.Hits {
			it := itemOf(h)
			r.metrics.DeliveryLatency(r.deliverCtx, req.Site.Integration, now.Sub(it.created))
			r.settle(it, s)
		}
		return
	case probe && q.probeRejected(req, s):
		return
	case s.Outcome == pipeline.RetryLater:
		// A parked site's probe got no answer in time, and the parking
		// ended meanwhile: req goes again.
		q.requeue(req)
		return
	case bisects(req, s):
		older, newer := halves(req)
		*bisected += 2
		r.deliver(q, older, false, bisected)
		r.deliver(q, newer, false, bisected)
		return
	case q.rejected(req, s):
		return
	}
	for _, h := range req.Hits {
		r.deadLetter(itemOf(h), "deliver", s)
	}
}

// answer sends req until the sink answers it for good (delivered or
// rejected) and returns that answer. A request without an answer is sent
// again (after a backoff) for as long as the relay runs: only the end of a
// partition's assignment or shutdown releases records unsettled, so a
// collector that fails in a way the HTTP client does not retry (a redirect
// loop, a certificate that fails verification) stalls its records instead
// of stranding them — until its site is parked (park.go), which ends the
// request. ok is false when none of req's records is this member's any
// more, or, unless req is the probe, when its site is paused or parked:
// req then waits in the queue, or is parked. A parked site's probe (the
// relay's own, only while the parking consumer cannot probe: park.go)
// waits one probe interval for an answer, and is returned as RetryLater
// without.
func (r *Relay) answer(q *siteQueue, req *pipeline.Request, probe bool) (s pipeline.Settlement, ok bool) {
	// pending counts for park_after (park.go), and, in the parking
	// consumer, for the relay's probes (parking.probes).
	q.sending(1)
	defer q.sending(-1)
	for attempt := 0; ; attempt++ {
		req.Hits = r.liveHits(req.Hits)
		if len(req.Hits) == 0 {
			return s, false
		}
		siteCtx, parking, held := q.beforeSend(*req, probe)
		if held {
			return s, false
		}
		ctx, done := requestContext(req.Hits)
		if siteCtx != nil {
			ctx, done = endWith(ctx, done, siteCtx)
		}
		stopProbe := func() {}
		if probe && parking {
			ctx, stopProbe = context.WithTimeout(ctx, q.probeEvery)
		}
		s = r.cfg.Sink.Send(ctx, *req)
		stopProbe()
		done()
		if s.Outcome != pipeline.RetryLater || probe && parking {
			return s, true
		}
		// RetryLater: the request's context ended (a partition moved, or
		// shutdown: liveHits releases those records next), or the sink's
		// retry budget ran out: wait, then send what is still ours again.
		if ctx.Err() == nil {
			backoff.Sleep(r.deliverCtx, max(r.cfg.Delivery.Backoff.Delay(attempt), s.RetryAfter))
		}
	}
}

// endWith returns ctx, ending also when other ends, and its release.
func endWith(ctx context.Context, done func(), other context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(other, cancel)
	return ctx, func() {
		stop()
		cancel()
		done()
	}
}

// liveHits returns the hits whose partition this member still owns, while
// the relay runs (a tracker's Context ends with either); it releases the
// others.
func (r *Relay) liveHits(hits []*pipeline.Hit) []*pipeline.Hit {
	live := hits[:0]
	for _, h := range hits {
		if it := itemOf(h); it.tr.Context().Err() != nil {
			r.abandon(it, endReason(it.tr))
			continue
		}
		live = append(live, h)
	}
	return live
}

// abandonHits releases the records of hits unsettled.
func (r *Relay) abandonHits(hits []*pipeline.Hit, reason string) {
	for _, h := range hits {
		r.abandon(itemOf(h), reason)
	}
}

// requestContext returns the context of a request: it ends when any of its
// records' partitions is revoked or lost (its records are no longer this
// member's to send) or at shutdown. A visitor's records share a partition,
// so nearly every request has one tracker and this allocates nothing.
func requestContext(hits []*pipeline.Hit) (context.Context, func()) {
	first := itemOf(hits[0]).tr
	var others []*offsets.Tracker
	for _, h := range hits[1:] {
		if tr := itemOf(h).tr; tr != first && !slices.Contains(others, tr) {
			others = append(others, tr)
		}
	}
	if len(others) == 0 {
		return first.Context(), func() {}
	}
	ctx, cancel := context.WithCancel(first.Context())
	stops := make([]func() bool, 0, len(others))
	for _, tr := range others {
		stops = append(stops, context.AfterFunc(tr.Context(), cancel))
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
