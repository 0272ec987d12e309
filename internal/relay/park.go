package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/park"
)

// Parking: a site that has failed for longer than delivery.park_after (no
// answer to a request it was sent, or paused by a reject storm) has its
// records written to the parking topic, and each is settled as parked once
// the broker acknowledged it: the site's outage no longer holds the commits
// of the partitions it shares with other sites, nor fills the buffer. A
// parking consumer in the same process, a relay of its own on the parking
// topic with the group <group>.park, runs the parked records through the
// stages again and delivers them once their site answers, one request at a
// time per site: while the site still fails, its partitions wait (commit
// only after delivery, as for the main group).
//
// Who probes a parked site: the parking consumer, not the relay. Its
// requests are the site's probes (one at a time, retried while the site
// fails, or, when it pauses the site itself, one every
// reject_probe_interval), and its first delivery ends the parking (and a
// pause) in the relay too (siteAnswered), after which the site's new
// records go direct again. The relay itself sends nothing to a parked
// site: every request of it, waiting or new, is parked at once, so no
// record of a parked site stays unsettled for longer than its write to the
// parking topic takes. (A probe of the relay's own would hold its records,
// and their partitions' commits, for up to reject_probe_interval while the
// collect client retries.) A parked site always has a parked record that
// the parking consumer has not delivered yet, or none written so far:
// once one is delivered, the site is no longer parked; a parked site
// with no traffic stays parked until its next record is parked and
// delivered.
//
// The relay probes a parked site itself, one of its requests every
// reject_probe_interval (without an answer within the interval, it is
// parked too), only when the parking consumer cannot: it has stopped (its
// Run failed), or its buffer is full (max_buffered_events) of other
// sites' records, as when another parked site's records fill it, so that
// this site's parked records may not be fetched before that site answers. A paused site
// that is not parked (parking off, or park_after not passed yet) is
// probed by the relay, as pause.go says.
//
// Ordering: a site's parked records reach it after the records it accepted
// before the parking, and may reach it after records sent direct once the
// parking ended.

// ParkGroupSuffix makes the parking consumer's group: <group>.park.
const ParkGroupSuffix = ".park"

// reasonNoAnswer is the parked reason of a site that answered nothing for
// park_after; a paused site's is the status that paused it (http_404).
const reasonNoAnswer = "no_answer"

// parking is the relay's parking topic writer and parking consumer; nil
// when parking is off. Its methods do nothing on nil.
type parking struct {
	after    time.Duration
	writer   *park.Writer
	consumer *Relay // nil in the parking consumer itself
	// stopped is set when the parking consumer's Run returned before the
	// relay's end: the relay probes its parked sites itself then.
	stopped atomic.Bool

	mu     sync.Mutex
	queues map[*pipeline.Site]*siteQueue // the parking consumer's, by site
}

// track records a site queue of the parking consumer, for probes.
func (p *parking) track(site *pipeline.Site, q *siteQueue) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.queues == nil {
		p.queues = map[*pipeline.Site]*siteQueue{}
	}
	p.queues[site] = q
}

// probes reports whether the parking consumer probes site: it runs, and
// either its buffer has room to fetch the site's parked records, or it
// holds some of them already (full of the site's own records, as in a long
// outage of a busy site, it is probing it).
func (p *parking) probes(site *pipeline.Site) bool {
	if p == nil || p.stopped.Load() {
		return false
	}
	if p.consumer.Buffered() < int64(p.consumer.cfg.Delivery.MaxBufferedEvents) {
		return true
	}
	p.mu.Lock()
	cq := p.queues[site]
	p.mu.Unlock()
	return cq != nil && cq.holding()
}

// holding reports whether the queue has a request waiting or being sent.
func (q *siteQueue) holding() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.head < len(q.reqs) || q.pending > 0
}

// probingLocked reports whether the relay sends a probe of its own to
// the site: while it is paused and not parked, or parked while the parking
// consumer does not probe it. q.mu is held (then the parking consumer's
// queue's: the lock order is the relay's queue, then the consumer's).
func (q *siteQueue) probingLocked() bool {
	if q.parking {
		return !q.r.park.probes(q.site)
	}
	return q.paused
}

func (c *Config) validatePark() error {
	if c.ParkTopic != "" && (c.ParkTopic == c.Topic || c.ParkTopic == c.DLQTopic) {
		return errors.New("relay: ParkTopic must differ from Topic and DLQTopic")
	}
	return nil
}

// newParking prepares the parking consumer: the relay's configuration on
// the parking topic and group, from the start of the topic, one request at
// a time per site, and no parking of its own.
func (r *Relay) newParking() error {
	if r.cfg.ParkTopic == "" || !r.cfg.Delivery.Parks() {
		return nil
	}
	pc := r.cfg
	pc.Topic, pc.Group, pc.ParkTopic = r.cfg.ParkTopic, r.cfg.Group+ParkGroupSuffix, ""
	pc.StartLatest = false // a parked record is never skipped
	pc.Delivery.Concurrency = 1
	pc.OnReady = nil
	pc.Logger = r.log.With("consumer", "parking")
	consumer, err := New(pc)
	if err != nil {
		return fmt.Errorf("relay: parking consumer: %w", err)
	}
	consumer.main = r
	r.park = &parking{after: *r.cfg.Delivery.ParkAfter, consumer: consumer}
	return nil
}

// Parking returns the parking consumer, or nil when parking is off: its
// Lag and Buffered are the parking topic's.
func (r *Relay) Parking() *Relay {
	if r.park == nil {
		return nil
	}
	return r.park.consumer
}

// open creates the parking topic writer, a producer of its own.
func (p *parking) open(ctx context.Context, r *Relay) error {
	if p == nil {
		return nil
	}
	w, err := park.Open(ctx, park.Config{Topic: r.cfg.ParkTopic, ClientOpts: r.cfg.ClientOpts, Logger: r.log, Backoff: r.cfg.Delivery.Backoff})
	if err != nil {
		return err
	}
	p.writer = w
	return nil
}

// run runs the parking consumer until ctx ends and it has shut down.
func (p *parking) run(ctx context.Context) {
	if p == nil {
		return
	}
	err := p.consumer.Run(ctx)
	if ctx.Err() == nil {
		p.stopped.Store(true) // the parked sites' probe timers see it
	}
	if err != nil {
		p.consumer.log.Error("parking consumer stopped: parked records wait in the parking topic until the next start; the relay probes parked sites itself", "error", err)
	}
}

// close closes the writer, once the relay's writes have ended.
func (p *parking) close() {
	if p != nil && p.writer != nil {
		p.writer.Close()
	}
}

func (p *parking) kill() {
	if p != nil {
		p.consumer.kill()
	}
}

// parkState is a site's parking state. Its siteQueue's mu guards it.
type parkState struct {
	parkAfter time.Duration // 0: parking is off
	// failingSince is when the first request sent since the site's last
	// answer was sent; while paused, when the pause began.
	failingSince time.Time
	pending      int // requests sent and not answered for good
	failures     int // requests and probes that failed since failingSince
	watchdog     *time.Timer
	parking      bool
	parkedAt     time.Time
	parkReason   string
	// siteCtx ends when the parking begins, which ends the site's requests
	// in flight; a new one serves the requests after.
	siteCtx    context.Context
	cancelSite context.CancelFunc
}

// beforeSend is called before each attempt of a request. Unless req is
// the probe and the relay still probes the site itself (probingLocked),
// it puts req back at the front of the queue and returns held when the
// site is paused (req waits) or parking (req is popped to be parked): a
// probe that was out when the parking began is parked too. It starts the site's failure clock when nothing was pending,
// and returns the context that ends when the site starts parking (nil when
// parking is off), and whether it is parking now.
func (q *siteQueue) beforeSend(req pipeline.Request, probe bool) (siteCtx context.Context, parking, held bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false, false
	}
	if (q.paused || q.parking) && !(probe && q.probingLocked()) {
		q.pushFront(req)
		return nil, q.parking, true
	}
	if q.parkAfter == 0 {
		return nil, false, false
	}
	if q.failingSince.IsZero() {
		q.failingSince = time.Now()
		q.armWatchdogLocked(q.parkAfter)
	}
	return q.siteCtx, q.parking, false
}

// sending counts a request whose sending begins (1) or ends (-1),
// answered or not.
func (q *siteQueue) sending(n int) {
	q.mu.Lock()
	q.pending += n
	q.mu.Unlock()
}

// answeredLocked records that the site answered: its failure clock stops,
// unless it is paused (a pause is a failure of its own).
func (q *siteQueue) answeredLocked() {
	if !q.paused {
		q.failingSince, q.failures = time.Time{}, 0
	}
}

// armWatchdogLocked checks the site's failure in d, unless a check is
// already due.
func (q *siteQueue) armWatchdogLocked(d time.Duration) {
	if q.watchdog == nil {
		q.watchdog = time.AfterFunc(d, q.checkFailing)
	}
}

// checkFailing parks the site when it has failed for park_after: no answer
// since failingSince while requests are pending, or paused since then.
func (q *siteQueue) checkFailing() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.watchdog = nil
	if q.closed || q.parking || q.failingSince.IsZero() {
		return
	}
	if !q.paused && q.pending == 0 {
		// What was pending went (its partition moved) without an answer.
		q.failingSince = time.Time{}
		return
	}
	if rest := q.parkAfter - time.Since(q.failingSince); rest > 0 {
		q.armWatchdogLocked(rest)
		return
	}
	q.parkLocked()
}

// parkLocked starts parking the site: its requests in flight end, and its
// waiting and new requests are popped to be parked. A probe of the relay's
// own is due every probe interval only while the parking consumer does
// not probe the site (probingLocked); a pause's probe scheduled before is
// replaced.
func (q *siteQueue) parkLocked() {
	q.parkReason = reasonNoAnswer
	if q.paused {
		q.parkReason = pipeline.StatusReason(q.status)
	}
	q.parking, q.parkedAt = true, time.Now()
	q.cancelSite()
	q.siteCtx, q.cancelSite = context.WithCancel(q.r.deliverCtx)
	q.scheduleProbeLocked()
	q.cond.Broadcast()
	q.r.isolation().SiteParking(q.r.deliverCtx, q.site.Integration, true)
	q.publishLocked()
	q.r.log.Warn("site parked: it has failed for longer than park_after; its records go to the parking topic, whose consumer delivers them once the site answers (its first delivery ends the parking)",
		"integration", q.site.Integration, "site_id", q.site.ID, "endpoint", q.site.Endpoint, "reason", q.parkReason,
		"failing_since", q.failingSince.UTC().Format(time.RFC3339), "park_after", q.parkAfter.String(), "probe_interval", q.probeEvery.String())
}

// unparkLocked ends the parking: the site accepted a request, the parking
// consumer's (siteAnswered) or the relay's probe.
func (q *siteQueue) unparkLocked(s pipeline.Settlement) {
	q.parking, q.probes = false, 0
	q.r.isolation().SiteParking(q.r.deliverCtx, q.site.Integration, false)
	q.publishLocked()
	q.r.log.Info("site unparked: it accepts requests again; its new records go direct, the parking consumer delivers the parked ones",
		"integration", q.site.Integration, "site_id", q.site.ID, "status", s.Status,
		"parked_for", time.Since(q.parkedAt).Round(time.Millisecond).String())
}

// siteAnswered is the parking consumer telling the relay that site
// accepted a parked record: when the site is paused or parked here, it
// resumes, as at a probe's 2xx. Without it, a site that has no new record
// to probe with would stay paused or parked (in the readiness detail and
// the metrics) after its parked records were delivered.
func (r *Relay) siteAnswered(site *pipeline.Site, s pipeline.Settlement) {
	// r.sender was set in Run before the parking consumer was started.
	r.sender.mu.Lock()
	q := r.sender.sites[site]
	r.sender.mu.Unlock()
	if q == nil {
		return
	}
	q.mu.Lock()
	held := (q.paused || q.parking) && !q.closed
	q.mu.Unlock()
	if held {
		q.answered(s)
	}
}

// parkingInfo returns what the parked copies of the site's records say.
func (q *siteQueue) parkingInfo() park.Parking {
	q.mu.Lock()
	defer q.mu.Unlock()
	return park.Parking{Integration: q.site.Integration, Reason: q.parkReason, FirstFailure: q.failingSince, Attempts: q.failures}
}

// parkRequest writes the records of req to the parking topic; each is
// settled as parked once the broker acknowledged it, or released
// unsettled when its partition moves or the relay shuts down first.
func (r *Relay) parkRequest(q *siteQueue, req pipeline.Request) {
	req.Hits = r.liveHits(req.Hits)
	p := q.parkingInfo()
	parked := pipeline.Settlement{Outcome: pipeline.Parked, Reason: p.Reason}
	for _, h := range req.Hits {
		it := itemOf(h)
		r.inflight.Add(1)
		ctx := r.spans.context(it.tr.Context(), it)
		r.park.writer.Write(ctx, it.rec, p, func(err error) {
			defer r.inflight.Done()
			if err != nil {
				r.abandon(it, endReason(it.tr))
				return
			}
			r.settle(it, parked)
		})
	}
}
