package relay

import (
	"context"
	"errors"
	"fmt"
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
// only after delivery, as for the main group). The parked site itself is
// probed every reject_probe_interval with one of its new requests (a probe
// without an answer within the interval is parked too); the first 2xx, to
// the probe or to the parking consumer, ends the parking (and a pause),
// and its new records go direct again.
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
	if err := p.consumer.Run(ctx); err != nil {
		p.consumer.log.Error("parking consumer stopped: parked records wait in the parking topic until the next start", "error", err)
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
// the probe, it puts req back at the front of the queue and returns held
// when the site is paused (req waits) or parking (req is popped to be
// parked). It starts the site's failure clock when nothing was pending,
// and returns the context that ends when the site starts parking (nil when
// parking is off), and whether it is parking now.
func (q *siteQueue) beforeSend(req pipeline.Request, probe bool) (siteCtx context.Context, parking, held bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, false, false
	}
	if !probe && (q.paused || q.parking) {
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

// parkLocked starts parking the site: its requests in flight end, its
// waiting and new requests are popped to be parked, and a probe is due
// every probe interval.
func (q *siteQueue) parkLocked() {
	q.parkReason = reasonNoAnswer
	if q.paused {
		q.parkReason = pipeline.StatusReason(q.status)
	}
	q.parking, q.parkedAt = true, time.Now()
	q.cancelSite()
	q.siteCtx, q.cancelSite = context.WithCancel(q.r.deliverCtx)
	if !q.paused {
		q.scheduleProbeLocked()
	}
	q.cond.Broadcast()
	q.r.isolation().SiteParking(q.r.deliverCtx, q.site.Integration, true)
	q.publishLocked()
	q.r.log.Warn("site parked: it has failed for longer than park_after; its records go to the parking topic, whose consumer delivers them once the site answers, and one request is sent as a probe every reject_probe_interval",
		"integration", q.site.Integration, "site_id", q.site.ID, "endpoint", q.site.Endpoint, "reason", q.parkReason,
		"failing_since", q.failingSince.UTC().Format(time.RFC3339), "park_after", q.parkAfter.String(), "probe_interval", q.probeEvery.String())
}

// unparkLocked ends the parking: the site answered a probe with a 2xx.
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
