package relay_test

import (
	"context"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/pipeline"
)

// Hit names that say which relay ran a record through the stages, for
// sourceSink: the main relay sees each record first, the parking consumer
// sees it again once it was parked.
const (
	fromMain    = "main"
	fromParking = "parking"
)

// sourceStages wraps stages so that each hit's Name says which relay built
// it: fromMain at a record's first pass, fromParking at its second (the
// parking consumer's; a record is parked only after the main relay ran it
// through the stages, and nothing is processed twice by the main relay in
// a test without rebalance).
func sourceStages(stages stagesFunc) stagesFunc {
	var mu sync.Mutex
	seen := map[string]int{}
	return func(ctx context.Context, h *pipeline.Hit) error {
		if err := stages(ctx, h); err != nil {
			return err
		}
		mu.Lock()
		seen[h.Event.EventID]++
		h.Name = fromMain
		if seen[h.Event.EventID] > 1 {
			h.Name = fromParking
		}
		mu.Unlock()
		return nil
	}
}

// sourceSink is a collectSink that counts, per site, the requests the
// main relay sent of the records produced from offset watchFrom on, and
// those the parking consumer sent.
type sourceSink struct {
	*collectSink
	watchFrom int

	mu    sync.Mutex
	sends map[string]int // "<integration>/<main|parking>"
}

func (s *sourceSink) Send(ctx context.Context, req pipeline.Request) pipeline.Settlement {
	for _, h := range req.Hits {
		if _, i := parseValue(string(h.Body)); i >= s.watchFrom || h.Name == fromParking {
			s.mu.Lock()
			s.sends[req.Site.Integration+"/"+h.Name]++
			s.mu.Unlock()
			break
		}
	}
	return s.collectSink.Send(ctx, req)
}

func (s *sourceSink) sent(integration, from string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends[integration+"/"+from]
}

// TestParkedSiteNotProbedByRelay: once a site is parked, the main relay
// sends it nothing, not even a probe: every record of it fetched after the
// parking began is written to the parking topic at once and settled as
// parked, so the main group commits the end of a wave produced during the
// outage (sharing no record with a request in flight) without any of its
// records going to the site; the parking consumer's requests are the
// site's probes, and its first delivery, once the site is fixed, ends the
// parking, after which new records go direct. Both for a site answering
// nothing (as the collect client retrying 503s) and for one paused by a
// 404. reject_probe_interval is short (20 ms), so that a probe of the main
// relay's own would go out many times during the second wave. (A long
// interval would not show it: the relay's first probe is due one interval
// after the parking.) Every record is delivered once, nothing is
// dead-lettered or released unsettled.
// Mutation caught: probingLocked() returning true for every parked site
// (the relay's probe of before, which held its records for up to
// reject_probe_interval while the collect client retried): "the main relay
// sent the parked site N requests of the second wave", at once.
func TestParkedSiteNotProbedByRelay(t *testing.T) {
	for _, tc := range siteFailures {
		t.Run(tc.name, func(t *testing.T) {
			const n = 20
			s := newStubTopic(t, 2)
			parkTopic, parkGroup := s.topic+".park", s.group+relay.ParkGroupSuffix
			s.k.CreateTopic(t, parkTopic, 1)
			s.produce(t, 2, 0, n)
			down := &pipeline.Site{Integration: "down", ID: 503, Endpoint: "http://127.0.0.1/down"}
			good := &pipeline.Site{Integration: "good", ID: 1, Endpoint: "http://127.0.0.1/event"}
			collect := newCollectSink()
			sink := &sourceSink{collectSink: collect, watchFrom: n, sends: map[string]int{}}
			tc.fail(collect, down)
			m := newCounter()
			r := newStubRelay(t, s.k, s.topic, s.group, stub{stages: sourceStages(twoSites(down, good)), sink: sink, metrics: m,
				logger: slog.New(slog.DiscardHandler), parkAfter: 50 * time.Millisecond, probe: 20 * time.Millisecond})
			stop := runRelay(t, r)
			failed := func() string {
				if d := m.sum(pipeline.Rejected.String()); d != 0 {
					return strconv.FormatInt(d, 10) + " records dead-lettered"
				}
				if a := m.abandoned(); a != 0 {
					return strconv.FormatInt(a, 10) + " records released unsettled"
				}
				if p := sink.sent("down", fromMain); p != 0 {
					return "the main relay sent the parked site " + strconv.Itoa(p) + " requests of the second wave"
				}
				return ""
			}

			// The first wave parks the site.
			until(t, "the first wave's records of the failing site parked and the main group's end committed", collect, m, func() bool {
				return m.get(pipeline.Parked.String(), tc.reason) == n &&
					maps.Equal(s.k.Committed(t, s.group, s.topic), map[int32]int64{0: n, 1: n})
			}, failed)

			// The second wave, while the site is parked: its records are
			// parked without being sent, and the main group commits its end.
			s.produce(t, 2, n, 2*n)
			until(t, "the second wave's records of the parked site parked and the main group's end committed", collect, m, func() bool {
				return m.get(pipeline.Parked.String(), tc.reason) == 2*n &&
					maps.Equal(s.k.Committed(t, s.group, s.topic), map[int32]int64{0: 2 * n, 1: 2 * n})
			}, failed)
			if why := failed(); why != "" {
				t.Fatal(why)
			}
			if p := m.get("parking", "down"); p != 1 {
				t.Fatalf("parking gauge of down = %d during the outage, want 1", p)
			}
			// The parking consumer probes the site with parked records.
			until(t, "the parking consumer probing the site", collect, m, func() bool {
				return sink.sent("down", fromParking) > 0
			}, failed)

			// Fixed: the parking consumer's first delivery ends the
			// parking; it delivers every parked record; a third wave goes
			// direct.
			tc.fix(collect, down)
			until(t, "the parked records delivered, the parking ended", collect, m, func() bool {
				return m.get("parking", "down") == 0 && s.k.Committed(t, parkGroup, parkTopic)[0] == 2*n
			}, failed)
			s.produce(t, 1, 2*n, 3*n)
			until(t, "the third wave delivered direct and committed", collect, m, func() bool {
				return maps.Equal(s.k.Committed(t, s.group, s.topic), map[int32]int64{0: 3 * n, 1: 2 * n})
			}, nil)
			stop()
			if parked := m.get(pipeline.Parked.String(), tc.reason); parked != 2*n {
				t.Errorf("%d records parked, want the %d of the two waves during the outage", parked, 2*n)
			}
			delivered := collect.deliveries()
			for p, to := range map[int32]int{0: 3 * n, 1: 2 * n} {
				for i := range to {
					if v := value(p, i); delivered[v] != 1 {
						t.Errorf("%s delivered %d times, want once", v, delivered[v])
					}
				}
			}
			if d, a := m.sum(pipeline.Rejected.String()), m.abandoned(); d != 0 || a != 0 {
				t.Errorf("%d records dead-lettered, %d released unsettled, want none", d, a)
			}
		})
	}
}
