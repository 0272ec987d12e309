package monitoring

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// checkKit checks every query of the dashboard and the rules against a
// scrape: the recording rules first, so that what they record is known, by
// name and labels, to the queries that use it.
func checkKit(cat catalog, dash, recording, alerting []query) (*checker, error) {
	c := newChecker(cat)
	var errs []error
	for _, q := range recording {
		ls, err := c.check(q.expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", q.where, err))
		}
		c.recorded[q.record] = ls
	}
	for _, q := range append(slices.Clone(alerting), dash...) {
		ls, err := c.check(q.expr)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", q.where, err))
			continue
		}
		if q.label != "" && !ls.has(q.label) {
			errs = append(errs, fmt.Errorf("%s: label_values(%s, %s): the series have no label %q (they have %s)", q.where, q.expr, q.label, q.label, ls.sorted()))
		}
	}
	return c, errors.Join(errs...)
}

// onDashboard are the metric families (as on /metrics; a histogram by its
// base name) the dashboard must show: every one README's Metrics bullet
// lists that a run on kfake produces (atrelay_kafka_throttle_duration_seconds
// needs a broker that throttles), and the runtime's.
var onDashboard = []string{
	"atrelay_records_consumed_total", "atrelay_records_settled_total",
	"atrelay_http_client_request_duration_seconds", "atrelay_http_client_retries_total",
	"atrelay_delivery_latency_seconds", "atrelay_records_buffered", "atrelay_consumer_lag",
	"atrelay_records_abandoned_total", "atrelay_dlq_write_errors_total", "atrelay_properties_adjusted_total",
	"atrelay_offsets_commits_total", "atrelay_consumer_rebalances_total", "atrelay_telemetry_spans_dropped_total",
	"atrelay_consumer_offset_gap_records_total", "atrelay_sites_paused", "atrelay_sites_parking",
	"messaging_kafka_connects_total", "messaging_kafka_fetch_bytes_total", "messaging_kafka_produce_bytes_total",
	"process_resident_memory_bytes", "process_cpu_seconds_total", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds",
}

// TestQueriesMatchLiveMetrics runs the service (runService), scrapes its
// /metrics, and checks every query of the dashboard and the rules against
// the scrape with Prometheus' PromQL parser: each series exists (or is a
// recording rule's, or one of the documented external series), each label
// a matcher, a by/without, an on() or a group_left names is on the series
// it applies to, each value an equality matcher expects was seen, and
// histogram_quantile is given buckets. It also checks that the dashboard
// shows every metric of onDashboard, and that the trace links search by
// the attribute the service's spans carry.
//
// Mutations caught (made on the scrape's catalog, as the service renaming
// a metric or a label would): atrelay_records_settled_total renamed,
// the integration label of the retries renamed, the outcome value dlq gone.
func TestQueriesMatchLiveMetrics(t *testing.T) {
	run := runService(t)
	cat, err := parseExposition(strings.NewReader(run.exposition))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	dash := dashboardQueries(t, loadDashboard(t))
	recording, alerting := ruleQueries(loadRules(t))
	t.Logf("%d series names on /metrics; %d dashboard queries, %d recording and %d alerting rules", len(cat), len(dash), len(recording), len(alerting))

	c, err := checkKit(cat, dash, recording, alerting)
	if err != nil {
		t.Errorf("queries that do not match /metrics:\n%v", err)
	}

	t.Run("dashboard shows every metric", func(t *testing.T) {
		dc, _ := checkKit(cat, dash, nil, nil)
		shown := func(family string) bool {
			for _, s := range []string{"", "_bucket", "_count", "_sum"} {
				if dc.metrics[family+s] {
					return true
				}
			}
			return false
		}
		for _, f := range onDashboard {
			if !shown(f) {
				t.Errorf("the dashboard shows nothing of %s", f)
			}
		}
		for name := range cat {
			if strings.HasPrefix(name, "atrelay_") && !c.metrics[name] && !shown(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")) {
				t.Logf("not on the dashboard: %s", name)
			}
		}
	})

	t.Run("a renamed metric or label is caught", func(t *testing.T) {
		for _, m := range []struct {
			name   string
			mutate func(catalog)
			want   []string // in the error, for the dashboard and the rules alike
		}{
			{"metric renamed", func(c catalog) {
				c["atrelay_records_settlements_total"] = c["atrelay_records_settled_total"]
				delete(c, "atrelay_records_settled_total")
			}, []string{"no series atrelay_records_settled_total"}},
			{"label renamed", func(c catalog) {
				ls := c["atrelay_http_client_retries_total"]
				ls["site"] = ls["integration"]
				delete(ls, "integration")
			}, []string{`no label "integration"`}},
			{"value gone", func(c catalog) {
				delete(c["atrelay_records_settled_total"]["outcome"], "dlq")
			}, []string{`atrelay_records_settled_total{outcome="dlq"} never seen`}},
		} {
			t.Run(m.name, func(t *testing.T) {
				mutant := catalog{}
				for name, ls := range cat {
					mutant[name] = map[string]map[string]bool{}
					for l, vs := range ls {
						mutant[name][l] = maps.Clone(vs)
					}
				}
				m.mutate(mutant)
				for _, part := range []struct {
					what                      string
					dash, recording, alerting []query
				}{{"dashboard", dash, nil, nil}, {"rules", nil, recording, alerting}} {
					_, err := checkKit(mutant, part.dash, part.recording, part.alerting)
					for _, w := range m.want {
						if err == nil || !strings.Contains(err.Error(), w) {
							t.Errorf("%s: the check missed it: want an error with %q, got %v", part.what, w, err)
						}
					}
				}
			})
		}
	})

	t.Run("trace links", func(t *testing.T) {
		var found []exportedSpan
		for _, ev := range run.events {
			if found = run.spans.withAttr(eventIDAttribute, ev.EventID); len(found) > 0 {
				break
			}
		}
		if len(found) == 0 {
			t.Fatalf("no exported span (of %d) carries %s with an event's id: the dashboard's trace search finds nothing", run.spans.count(), eventIDAttribute)
		}
		t.Logf("span %q of service %q carries %s", found[0].name, found[0].service, eventIDAttribute)
		if found[0].service != jaegerService {
			t.Errorf("the span's service.name is %q; the Jaeger link searches service=%s", found[0].service, jaegerService)
		}
	})
}
