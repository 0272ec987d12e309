package relay

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/atrelay/atrelay/pipeline"
)

// newTestQueue returns a site's queue with no sender goroutines, for the
// pause rules alone.
func newTestQueue(policy pipeline.RejectPolicy) *siteQueue {
	r := &Relay{log: slog.New(slog.DiscardHandler), metrics: nopMetrics{}, deliverCtx: context.Background()}
	q := &siteQueue{r: r, site: &pipeline.Site{Integration: "s", OnReject: policy}, probeEvery: 30 * time.Second}
	q.cond.L = &q.mu
	return q
}

func rejection(status int) pipeline.Settlement {
	return pipeline.Settlement{Outcome: pipeline.Rejected, Reason: pipeline.StatusReason(status), Status: status}
}

var accepted = pipeline.Settlement{Outcome: pipeline.Delivered, Status: http.StatusNoContent}

// TestRejectStormThreshold: which answers pause a site. 401, 403 and 404
// pause at once; other rejections pause when at least 90% of at least 20
// answers within a minute are rejections; on_reject dlq never pauses.
// Each rejection before the pause is dead-lettered (rejected returns
// false), the one that pauses and those after are held (true).
// Mutations caught (each applied once, seen failing, reverted): `>=` made
// `>` in the percentage ("exactly 90%" stays unpaused); the window never
// forgetting (`sec-b.sec < n` made `true`: "19 in 19 s, 2 at 70 s"
// pauses); the
// window forgetting a second early (`< n-1`: "19, 59 s, 1" stays unpaused);
// pausesAtOnce without 403 ("403" stays unpaused); stormMinRequests
// ignored ("19 rejections" pauses at the first).
func TestRejectStormThreshold(t *testing.T) {
	type answer struct {
		status int           // 0: 204
		after  time.Duration // waited before it
	}
	repeat := func(n, status int) []answer {
		out := make([]answer, n)
		for i := range out {
			out[i].status = status
		}
		return out
	}
	spread := func(n, status int) []answer { // one a second
		out := repeat(n, status)
		for i := range out {
			out[i].after = time.Second
		}
		return out
	}
	join := func(parts ...[]answer) []answer {
		var out []answer
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	tests := []struct {
		name     string
		policy   pipeline.RejectPolicy
		answers  []answer
		pausesAt int // index of the answer that pauses; -1 for none
	}{
		{"404", "", repeat(1, 404), 0},
		{"401", "", repeat(1, 401), 0},
		{"403", pipeline.RejectPause, repeat(1, 403), 0},
		{"404 after deliveries", "", join(repeat(5, 0), repeat(1, 404)), 5},
		{"one 400", "", repeat(1, 400), -1},
		{"19 rejections", "", repeat(19, 400), -1},
		{"20 rejections", "", repeat(20, 400), 19},
		{"20 rejections of 422", "", repeat(20, 422), 19},
		{"exactly 90%", "", join(repeat(2, 0), repeat(18, 400)), 19},
		{"85%", "", join(repeat(3, 0), repeat(17, 400)), -1},
		{"85%, then 90%", "", join(repeat(3, 0), repeat(27, 400)), 29},
		{"19, a minute, 1", "", join(repeat(19, 400), []answer{{status: 400, after: time.Minute}}), -1},
		{"19, 59 s, 1", "", join(repeat(19, 400), []answer{{status: 400, after: 59 * time.Second}}), 19},
		// 19 in 19 s, then 2 at 70 s: 9 of the 19 are within the
		// minute, their buckets not yet reused.
		{"19 in 19 s, 2 at 70 s", "", join(spread(19, 400), []answer{{status: 400, after: 51 * time.Second}, {status: 400}}), -1},
		{"on_reject dlq, 404", pipeline.RejectDLQ, repeat(3, 404), -1},
		{"on_reject dlq, storm", pipeline.RejectDLQ, repeat(40, 400), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newTestQueue(tc.policy)
				for i, a := range tc.answers {
					time.Sleep(a.after)
					if a.status == 0 {
						q.delivered(accepted)
						continue
					}
					held := q.rejected(pipeline.Request{Site: q.site}, rejection(a.status))
					if want := tc.pausesAt >= 0 && i >= tc.pausesAt; held != want {
						t.Fatalf("answer %d (%d): held %v, want %v", i, a.status, held, want)
					}
				}
				if q.paused != (tc.pausesAt >= 0) {
					t.Fatalf("paused %v, want %v", q.paused, tc.pausesAt >= 0)
				}
				if q.paused && q.status != tc.answers[tc.pausesAt].status {
					t.Errorf("paused by %d, want %d", q.status, tc.answers[tc.pausesAt].status)
				}
				if q.timer != nil {
					q.timer.Stop()
				}
			})
		})
	}
}

// TestPausedSiteProbes: a paused site's queue gives nothing to its senders
// until reject_probe_interval has passed, then one request as the probe,
// and nothing more while the probe is out. A rejected probe's request goes
// to the back, so that the next probe, an interval later, is another
// request; a 2xx resumes the site and its queue serves every sender again.
// Mutations caught (each applied once, seen failing, reverted): pop()
// ignoring probeDue (a request is popped at once); probeRejected() putting the
// request back at the front (the second probe is the first one's request
// again); delivered() not broadcasting the resume (the waiting sender
// never wakes).
func TestPausedSiteProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newTestQueue("")
		a := pipeline.Request{Site: q.site, IDClient: "a"}
		b := pipeline.Request{Site: q.site, IDClient: "b"}
		if !q.rejected(a, rejection(http.StatusNotFound)) {
			t.Fatal("404 did not pause the site")
		}
		q.reqs = append(q.reqs, b)
		type popped struct {
			req   pipeline.Request
			probe bool
		}
		pops := make(chan popped, 2)
		pop := func() {
			req, how, ok := q.pop()
			if ok {
				pops <- popped{req, how == probeIt}
			}
		}
		next := func() (popped, bool) {
			synctest.Wait()
			select {
			case p := <-pops:
				return p, true
			default:
				return popped{}, false
			}
		}
		go pop()
		if p, ok := next(); ok {
			t.Fatalf("popped %s at the pause, want nothing before the probe interval", p.req.IDClient)
		}
		time.Sleep(q.probeEvery - time.Millisecond)
		if p, ok := next(); ok {
			t.Fatalf("popped %s before the probe interval", p.req.IDClient)
		}
		time.Sleep(time.Millisecond)
		p, ok := next()
		if !ok || !p.probe || p.req.IDClient != "a" {
			t.Fatalf("at the interval popped %+v (%v), want a as the probe", p, ok)
		}
		go pop()
		time.Sleep(q.probeEvery)
		if p, ok := next(); ok {
			t.Fatalf("popped %s while the probe is out", p.req.IDClient)
		}
		if !q.probeRejected(a, rejection(http.StatusNotFound)) {
			t.Fatal("the probe's rejection did not keep the site paused")
		}
		if p, ok := next(); ok {
			t.Fatalf("popped %s right after the failed probe, want the next one an interval later", p.req.IDClient)
		}
		time.Sleep(q.probeEvery)
		p, ok = next()
		if !ok || !p.probe || p.req.IDClient != "b" {
			t.Fatalf("the second probe is %+v (%v), want b (a went to the back)", p, ok)
		}
		go pop()
		synctest.Wait() // the sender waits
		q.delivered(accepted)
		p, ok = next()
		if !ok || p.probe || p.req.IDClient != "a" {
			t.Fatalf("after the resume popped %+v (%v), want a, not a probe", p, ok)
		}
		if q.paused {
			t.Fatal("still paused after a 2xx")
		}
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		q.cond.Broadcast()
	})
}

// TestParkedSiteProbedByParkingConsumer: once a site is parked, the relay
// sends no probe of its own while its parking consumer probes the site:
// every request is popped to be parked, however many probe intervals
// pass, and a probe that was out when the parking began is held (and
// parked) at its next attempt. The relay probes a parked site itself when
// there is no parking consumer, when it has stopped, or when its buffer is
// full of other sites' records (it may not fetch this site's parked
// records); not when it is full holding the site's own (it probes the
// site). The probe timer keeps watching, so that a parking consumer
// stopping later is noticed.
// Mutations caught (each applied once, seen failing, reverted):
// probingLocked() returning true for every parked site (the relay's probe
// of before: "consumer probes" pops a probe); probeTick() not re-arming
// while the parking consumer probes ("stopped later" never probes);
// parking.probes() ignoring the buffer ("consumer full of other sites"
// never probes); parking.probes() ignoring what the consumer holds
// ("consumer full, holding the site's" probes);
// beforeSend() letting any probe through (the probe out at the parking is
// not held).
func TestParkedSiteProbedByParkingConsumer(t *testing.T) {
	tests := []struct {
		name     string
		consumer bool         // a parking consumer exists
		full     bool         // its buffer is full
		holds    bool         // it holds a request of the site
		stopped  bool         // its Run has returned
		want     use          // the second request's use, probeEvery after the parking
		later    func(*Relay) // then applied to the parking consumer
		wantNext use          // the third request's use, probeEvery after later
	}{
		{name: "consumer probes", consumer: true, want: parkIt, wantNext: parkIt},
		{name: "consumer stopped later", consumer: true, want: parkIt,
			later: func(c *Relay) { c.main.park.stopped.Store(true) }, wantNext: probeIt},
		{name: "consumer full of other sites", consumer: true, full: true, want: probeIt, wantNext: probeIt},
		{name: "consumer full, holding the site's", consumer: true, full: true, holds: true, want: parkIt, wantNext: parkIt},
		{name: "consumer stopped", consumer: true, stopped: true, want: probeIt, wantNext: probeIt},
		{name: "no consumer", want: probeIt, wantNext: probeIt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newTestQueue("")
				var consumer *Relay
				if tc.consumer {
					consumer = &Relay{cfg: Config{Delivery: Delivery{MaxBufferedEvents: 10}}, main: q.r}
					q.r.park = &parking{consumer: consumer}
					if tc.full {
						consumer.buffered.Store(10)
					}
					cq := newTestQueue("")
					if tc.holds {
						cq.reqs = []pipeline.Request{{Site: q.site}}
					}
					q.r.park.track(q.site, cq)
					q.r.park.stopped.Store(tc.stopped)
				}
				req := func(id string) pipeline.Request { return pipeline.Request{Site: q.site, IDClient: id} }
				pop := func(what string) use {
					t.Helper()
					got := make(chan use, 1)
					go func() {
						_, how, _ := q.pop()
						got <- how
					}()
					synctest.Wait()
					select {
					case how := <-got:
						return how
					default:
						t.Fatalf("%s: nothing popped", what)
						return 0
					}
				}
				// Paused by a 404, its probe out, then parked.
				if !q.rejected(req("probe"), rejection(http.StatusNotFound)) {
					t.Fatal("404 did not pause the site")
				}
				time.Sleep(q.probeEvery)
				if how := pop("the pause's probe"); how != probeIt {
					t.Fatalf("the paused site's first pop is %d, want its probe", how)
				}
				q.mu.Lock()
				q.siteCtx, q.cancelSite = context.WithCancel(context.Background())
				q.parkLocked()
				q.mu.Unlock()
				_, _, held := q.beforeSend(req("probe"), true)
				if wantHeld := tc.want == parkIt; held != wantHeld {
					t.Errorf("the probe out at the parking: held %v, want %v", held, wantHeld)
				}
				if held {
					q.probeLost()
					q.mu.Lock()
					q.head++ // the probe's request, parked
					q.mu.Unlock()
				}

				q.mu.Lock()
				q.reqs = append(q.reqs, req("a"))
				q.mu.Unlock()
				if how := pop("a"); how != parkIt {
					t.Fatalf("at the parking, a is popped for %d, want parkIt", how)
				}
				time.Sleep(3 * q.probeEvery)
				q.mu.Lock()
				q.reqs = append(q.reqs, req("b"))
				q.mu.Unlock()
				if how := pop("b"); how != tc.want {
					t.Errorf("3 probe intervals into the parking, b is popped for %d, want %d", how, tc.want)
				}
				if tc.later != nil {
					tc.later(consumer)
				}
				if tc.want == probeIt {
					q.probeRejected(req("b"), pipeline.Settlement{Outcome: pipeline.RetryLater, Reason: "http_503", Status: 503})
				}
				time.Sleep(3 * q.probeEvery)
				q.mu.Lock()
				q.reqs, q.head = []pipeline.Request{req("c")}, 0 // b, back after its probe, was parked
				q.mu.Unlock()
				if how := pop("c"); how != tc.wantNext {
					t.Errorf("then c is popped for %d, want %d", how, tc.wantNext)
				}
				q.mu.Lock()
				q.closed = true
				q.timer.Stop()
				q.mu.Unlock()
				q.cond.Broadcast()
			})
		})
	}
}
