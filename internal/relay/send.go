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

	mu     sync.Mutex
	sites  map[*pipeline.Site]*siteQueue
	closed bool
	wg     sync.WaitGroup
}

// siteQueue is one site's FIFO of requests, served by concurrency
// goroutines.
type siteQueue struct {
	mu     sync.Mutex
	cond   sync.Cond
	reqs   []pipeline.Request // reqs[head:] are waiting, oldest first
	head   int
	closed bool
}

func newSender(r *Relay, concurrency int) *sender {
	return &sender{r: r, concurrency: max(concurrency, 1), sites: map[*pipeline.Site]*siteQueue{}}
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
		q = &siteQueue{}
		q.cond.L = &q.mu
		s.sites[site] = q
		for range s.concurrency {
			s.wg.Go(func() {
				for {
					req, ok := q.pop()
					if !ok {
						return
					}
					s.r.send(req)
				}
			})
		}
	}
	return q
}

// pop returns the oldest request, waiting for one; false once the queue is
// closed and empty.
func (q *siteQueue) pop() (pipeline.Request, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.head == len(q.reqs) && !q.closed {
		q.cond.Wait()
	}
	if q.head == len(q.reqs) {
		return pipeline.Request{}, false
	}
	req := q.reqs[q.head]
	q.reqs[q.head] = pipeline.Request{}
	q.head++
	if q.head == len(q.reqs) {
		q.reqs, q.head = q.reqs[:0], 0
	}
	return req, true
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
		q.mu.Unlock()
		q.cond.Broadcast()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// send delivers one request and settles its records: delivered, or
// dead-lettered when rejected. A request without an answer is sent again
// (after a backoff) for as long as the relay runs: only the end of a
// partition's assignment or shutdown releases records unsettled, so a
// collector that fails in a way the HTTP client does not retry (a redirect
// loop, a certificate that fails verification) stalls its records instead
// of stranding them.
func (r *Relay) send(req pipeline.Request) {
	for attempt := 0; ; attempt++ {
		req.Hits = r.liveHits(req.Hits)
		if len(req.Hits) == 0 {
			return
		}
		ctx, done := requestContext(req.Hits)
		s := r.cfg.Sink.Send(ctx, req)
		done()
		switch s.Outcome {
		case pipeline.Delivered:
			now := time.Now()
			for _, h := range req.Hits {
				it := itemOf(h)
				r.metrics.DeliveryLatency(r.deliverCtx, req.Site.Integration, now.Sub(it.created))
				r.settle(it, s)
			}
			return
		case pipeline.Rejected:
			for _, h := range req.Hits {
				r.deadLetter(itemOf(h), "deliver", s)
			}
			return
		}
		// RetryLater: the request's context ended (a partition moved, or
		// shutdown: liveHits releases those records next), or the sink's
		// retry budget ran out: wait, then send what is still ours again.
		if ctx.Err() == nil {
			backoff.Sleep(r.deliverCtx, max(r.cfg.Delivery.Backoff.Delay(attempt), s.RetryAfter))
		}
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
