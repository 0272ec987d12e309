package relay

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atrelay/atrelay/pipeline"
)

// A reject storm pauses a site instead of emptying the stream into the
// dead-letter topic. A site whose integration's on_reject is pause (the
// default) is paused when it answers 401, 403 or 404 (the site id, path or
// account is wrong, not the event), or when at least stormPercent of at
// least stormMinRequests requests answered within stormWindow were
// rejected. A paused site's records wait in its queue, neither
// dead-lettered nor delivered, holding their partitions' commits like an
// outage does, until delivery.park_after has passed: then they are parked
// (park.go). Until then, every delivery.reject_probe_interval one waiting
// request is sent as a probe, and any 2xx from the site resumes it; once
// parked, the parking consumer's requests are the site's probes, and its
// first delivery resumes the site here too (park.go says when the relay
// still probes a parked site itself).
//
// The storm counts answered requests whose answer settles their events: a
// 2xx, or a rejection of a single event or of a request that is not
// bisected. A request answered 400 and bisected (bisect.go) is not counted
// itself, its halves are: one bad event among many counts once.

// The storm thresholds.
const (
	stormWindow      = time.Minute
	stormMinRequests = 20
	stormPercent     = 90
)

// pausesAtOnce reports whether a rejection means the site is wrong rather
// than the event: a storm at the first one.
func pausesAtOnce(status int) bool {
	return status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound
}

// IsolationMetrics is what a Metrics may also count: how the relay keeps a
// bad event or a misconfigured site from emptying the stream.
// *telemetry.Metrics is one. Like RebalanceMetrics, it is apart from
// Metrics so that a Metrics without it still works.
type IsolationMetrics interface {
	// Bisected counts a request rejected with 400 that was split to
	// isolate its rejected events, with the requests the split sent
	// beyond the rejected one (at most 2n-2 for n events).
	Bisected(ctx context.Context, integration string, requests int64)
	// SitePaused records that integration's site was paused by a reject
	// storm of status (paused), or resumed (!paused, with the status that
	// paused it).
	SitePaused(ctx context.Context, integration string, status int, paused bool)
	// SiteParking records that integration's site started (parking) or
	// stopped parking its records.
	SiteParking(ctx context.Context, integration string, parking bool)
}

func (r *Relay) isolation() IsolationMetrics {
	m, ok := r.metrics.(IsolationMetrics)
	switch {
	case !ok:
		return nopIsolation{}
	case r.main != nil:
		return consumerIsolation{m}
	}
	return m
}

// consumerIsolation is the parking consumer's IsolationMetrics: its
// bisections count, but its pauses do not move the sites' gauges, which
// are the relay's: a site paused in both would read 2. The readiness
// detail shows the parking consumer's pauses (Sites).
type consumerIsolation struct{ IsolationMetrics }

func (consumerIsolation) SitePaused(context.Context, string, int, bool) {}
func (consumerIsolation) SiteParking(context.Context, string, bool)     {}

type nopIsolation struct{}

func (nopIsolation) Bisected(context.Context, string, int64)       {}
func (nopIsolation) SitePaused(context.Context, string, int, bool) {}
func (nopIsolation) SiteParking(context.Context, string, bool)     {}

// SiteState is a site that a relay holds apart from the others: paused by
// a reject storm, parking its records, or both. Neither makes the member
// unready: the site is wrong or down, and another member would fare no
// better; Relay.Sites lists them for the readiness detail.
type SiteState struct {
	// Group is the consumer group of the relay that holds the site: the
	// main group, or <group>.park for the parking consumer.
	Group       string
	Integration string
	SiteID      int64
	// Paused: the status that paused the site (401, 403, 404, or the
	// status of a storm) and when.
	Paused      bool
	Status      int
	PausedSince time.Time
	// Parking: why (no_answer, or the pausing status's reason: http_404)
	// and since when the site's records go to the parking topic.
	Parking      bool
	ParkReason   string
	ParkingSince time.Time
}

// String describes s in one line, with the age of each state as of now:
//
//	integration wrong (site 404, group atrelay): paused by HTTP 404 since 2026-11-26T02:30:00Z (3m0s); parking its records (http_404) since 2026-11-26T02:32:00Z (1m0s)
func (s SiteState) String() string {
	var parts []string
	since := func(t time.Time) string {
		return fmt.Sprintf("since %s (%s)", t.UTC().Format(time.RFC3339), time.Since(t).Round(time.Second))
	}
	if s.Paused {
		parts = append(parts, fmt.Sprintf("paused by HTTP %d %s", s.Status, since(s.PausedSince)))
	}
	if s.Parking {
		parts = append(parts, fmt.Sprintf("parking its records (%s) %s", s.ParkReason, since(s.ParkingSince)))
	}
	return fmt.Sprintf("integration %s (site %d, group %s): %s", s.Integration, s.SiteID, s.Group, strings.Join(parts, "; "))
}

// siteBoard holds the state of each site paused or parking, for Sites. Its
// zero value is empty and ready. A siteQueue writes it under its own mu
// (publishLocked): the lock order is siteQueue.mu, then siteBoard.mu.
type siteBoard struct {
	mu    sync.Mutex
	sites map[*pipeline.Site]SiteState
}

// publishLocked records q's pause and parking on the relay's board, or
// takes the site off when it is neither. q.mu is held.
func (q *siteQueue) publishLocked() {
	s := SiteState{Group: q.r.cfg.Group, Integration: q.site.Integration, SiteID: q.site.ID,
		Paused: q.paused, Status: q.status, PausedSince: q.since,
		Parking: q.parking, ParkReason: q.parkReason, ParkingSince: q.parkedAt}
	b := &q.r.sites
	b.mu.Lock()
	defer b.mu.Unlock()
	if !s.Paused && !s.Parking {
		delete(b.sites, q.site)
		return
	}
	if b.sites == nil {
		b.sites = map[*pipeline.Site]SiteState{}
	}
	b.sites[q.site] = s
}

// Sites returns the sites paused or parking, in this relay and in its
// parking consumer, by integration and then group. It is safe to call at
// any time, also before Run and after it returned (the states of the last
// run). The sites are not a reason to restart: readiness does not depend
// on them.
func (r *Relay) Sites() []SiteState {
	r.sites.mu.Lock()
	out := slices.Collect(maps.Values(r.sites.sites))
	r.sites.mu.Unlock()
	if r.park != nil {
		out = append(out, r.park.consumer.Sites()...)
	}
	slices.SortFunc(out, func(a, b SiteState) int {
		return cmp.Or(strings.Compare(a.Integration, b.Integration), strings.Compare(a.Group, b.Group))
	})
	return out
}

// rejectWindow counts a site's answered and rejected requests over the
// last stormWindow, one bucket per second.
type rejectWindow struct {
	buckets [stormWindow / time.Second]struct {
		sec                int64 // the bucket's second (Unix); 0 unused
		answered, rejected int
	}
}

// add counts an answer at now and returns the counts over the window
// ending at now.
func (w *rejectWindow) add(now time.Time, rejected bool) (answered, rejections int) {
	sec := now.Unix()
	n := int64(len(w.buckets))
	b := &w.buckets[sec%n]
	if b.sec != sec {
		b.sec, b.answered, b.rejected = sec, 0, 0
	}
	b.answered++
	if rejected {
		b.rejected++
	}
	for _, b := range w.buckets {
		if sec-b.sec < n {
			answered += b.answered
			rejections += b.rejected
		}
	}
	return answered, rejections
}

// pause is a site's reject-storm state. Its siteQueue's mu guards it.
type pause struct {
	window rejectWindow
	paused bool
	status int       // the status that paused the site
	since  time.Time // when it was paused
	// probeDue says a request may go as the probe: set when the probe
	// interval has passed, cleared when the probe is popped, so that one
	// probe at a time is out.
	probeDue bool
	timer    *time.Timer
	probes   int // failed probes since the pause
}

// delivered counts a 2xx: the site answered. It resumes the site when
// paused, and ends its parking; in the parking consumer, it does so in
// the main relay too (siteAnswered).
func (q *siteQueue) delivered(s pipeline.Settlement) {
	q.answered(s)
	if q.r.main != nil {
		q.r.main.siteAnswered(q.site, s)
	}
}

// answered is delivered within the queue: the site's own state learns the
// 2xx.
func (q *siteQueue) answered(s pipeline.Settlement) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.parking {
		q.unparkLocked(s)
	}
	if q.paused {
		q.resumeLocked(s)
	}
	if q.timer != nil {
		q.timer.Stop()
	}
	q.probeDue = false
	q.answeredLocked()
	if q.site.OnReject != pipeline.RejectDLQ {
		q.window.add(time.Now(), false)
	}
}

// resumeLocked ends the pause: the site accepted a request.
func (q *siteQueue) resumeLocked(s pipeline.Settlement) {
	pausedFor := time.Since(q.since)
	status := q.status
	q.timer.Stop()
	q.pause = pause{}
	q.cond.Broadcast()
	q.r.isolation().SitePaused(q.r.deliverCtx, q.site.Integration, status, false)
	q.publishLocked()
	q.r.log.Info("site resumed: the collect server accepts its requests again; its waiting records are sent",
		"integration", q.site.Integration, "site_id", q.site.ID, "endpoint", q.site.Endpoint,
		"status", s.Status, "paused_by", status, "paused_for", pausedFor.Round(time.Millisecond).String())
}

// rejected counts a rejection that settles req's events and returns true
// when they must not go to the dead-letter topic: the site is paused, or
// this rejection pauses it. req is then back in the queue, where it waits
// (or is parked, when the site is). It is false for an integration with
// on_reject dlq.
func (q *siteQueue) rejected(req pipeline.Request, s pipeline.Settlement) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.answeredLocked()
	if q.site.OnReject == pipeline.RejectDLQ || q.closed {
		return false
	}
	answered, rejections := q.window.add(time.Now(), true)
	if !q.paused {
		storm := answered >= stormMinRequests && rejections*100 >= answered*stormPercent
		if !pausesAtOnce(s.Status) && !storm {
			return false
		}
		q.pauseLocked(s, answered, rejections)
	}
	q.pushFront(req)
	return true
}

// pauseLocked pauses the site: it logs the one ERROR of the pause and
// schedules the first probe.
func (q *siteQueue) pauseLocked(s pipeline.Settlement, answered, rejections int) {
	if q.timer != nil {
		q.timer.Stop() // a parked site's probe: the pause's replaces it
	}
	q.pause = pause{paused: true, status: s.Status, since: time.Now()}
	q.scheduleProbeLocked()
	if q.parkAfter > 0 {
		// A pause is a failure: park_after after it, the site is parked.
		q.failingSince = q.since
		q.armWatchdogLocked(q.parkAfter)
	}
	q.r.isolation().SitePaused(q.r.deliverCtx, q.site.Integration, s.Status, true)
	q.publishLocked()
	why := "the status means the site id, collect path or account is wrong"
	if !pausesAtOnce(s.Status) {
		why = "most of its recent requests were rejected"
	}
	q.r.log.Error("site paused: its collect server rejects its requests; its records wait, neither dead-lettered nor delivered, and one is sent as a probe every reject_probe_interval until the site accepts it (fix the integration, or set on_reject: dlq)",
		"integration", q.site.Integration, "site_id", q.site.ID, "endpoint", q.site.Endpoint,
		"status", s.Status, "reason", s.Reason, "why", why, "rejected", rejections, "answered", answered, "window", stormWindow.String(),
		"probe_interval", q.probeEvery.String(), "error", s.Err)
}

// scheduleProbeLocked makes a probe due in probeEvery, replacing any probe
// scheduled before. While the parking consumer probes a parked site
// (probingLocked is false), the timer only looks again every probeEvery,
// in case the parking consumer stopped or its buffer is full.
func (q *siteQueue) scheduleProbeLocked() {
	if q.timer != nil {
		q.timer.Stop()
	}
	q.probeDue = false
	q.probeGen++
	gen := q.probeGen
	q.timer = time.AfterFunc(q.probeEvery, func() { q.probeTick(gen) })
}

// probeTick is the probe timer of generation gen firing: a probe is due
// when the relay probes the site itself. A tick of a timer replaced since
// does nothing, so that one chain of ticks runs at a time.
func (q *siteQueue) probeTick(gen uint64) {
	q.mu.Lock()
	switch {
	case gen != q.probeGen || q.closed:
	case q.probingLocked():
		q.probeDue = true
	case q.parking:
		q.scheduleProbeLocked()
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

// probeRejected handles a probe that was not accepted (rejected, or, for
// a parked site, without an answer in time): while the site is still
// paused or parked, req goes to the back of the queue (so that the next
// probe tries another request: one bad event cannot keep a fixed site
// paused), where it waits or is parked, and the next probe is scheduled.
// It returns false when the site resumed meanwhile: the answer is then an
// ordinary one.
func (q *siteQueue) probeRejected(req pipeline.Request, s pipeline.Settlement) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.paused && !q.parking || q.closed {
		return false
	}
	q.probes++
	q.failures++
	q.reqs = append(q.reqs, req)
	q.scheduleProbeLocked()
	q.cond.Broadcast()
	state, since := "paused", q.since
	if q.parking {
		state, since = "parked", q.parkedAt
	}
	q.r.log.Warn("site still "+state+": the probe request was not accepted",
		"integration", q.site.Integration, "site_id", q.site.ID, "status", s.Status, "reason", s.Reason,
		"probes", q.probes, state+"_for", time.Since(since).Round(time.Second).String(), "next_probe_in", q.probeEvery.String())
	return true
}

// requeue puts req back as the oldest waiting request.
func (q *siteQueue) requeue(req pipeline.Request) {
	q.mu.Lock()
	q.pushFront(req)
	q.mu.Unlock()
	q.cond.Signal()
}

// probeLost ends a probe whose records are no longer this member's, or
// that was held because the parking began: the next waiting request is
// the probe, at once, when the relay still probes the site itself.
func (q *siteQueue) probeLost() {
	q.mu.Lock()
	switch {
	case q.probingLocked():
		q.probeDue = true
	case q.parking && !q.closed:
		// The parking began while the probe was out, and the parking
		// consumer probes now: the timer only watches it.
		q.scheduleProbeLocked()
	}
	q.mu.Unlock()
	q.cond.Broadcast()
}

// pushFront puts req back as the oldest waiting request. q.mu is held.
func (q *siteQueue) pushFront(req pipeline.Request) {
	if q.head > 0 {
		q.head--
		q.reqs[q.head] = req
		return
	}
	q.reqs = append(q.reqs, pipeline.Request{})
	copy(q.reqs[1:], q.reqs)
	q.reqs[0] = req
}
