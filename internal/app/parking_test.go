package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/relay"
)

// The operability of failure isolation (issue 14): what the readiness
// detail, the metrics, `offsets show` and `check --connect` say about
// paused and parked sites and the parking consumer.

// TestReadyzNamesIsolatedSites runs Serve with the news site answering 404
// to everything: the site is paused, then parked (park_after), and /readyz
// stays 200 (a wrong site is no reason to restart the member) while its
// detail names the site, the status that paused it, why it parks and since
// when, in the relay's group and in the parking consumer's (which pauses
// it too); the sites' gauges read 1, not 2. /metrics shows the parking consumer's lag and buffered records
// beside the relay's, told apart by their group (and topic). Once the
// collector accepts the site again, every event arrives (through the
// parking consumer) and the detail is gone, with no new event to probe
// the site with.
// Mutations caught: Serve not setting the health endpoint's Detail (tried:
// /readyz says "ready" alone while the site is paused: time-out waiting
// for its line); the parking consumer's pauses counted in the sites'
// gauges (tried: atrelay_sites_paused{…news} 2).
func TestReadyzNamesIsolatedSites(t *testing.T) {
	w := newWorld(t, 2, 100)
	parkTopic := w.topic + ".park"
	w.kafka.CreateTopic(t, parkTopic, 1)
	var wrong atomic.Bool
	wrong.Store(true)
	w.collect.Config.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if wrong.Load() {
			http.Error(rw, "no such site", http.StatusNotFound)
			return
		}
		w.collector.ServeHTTP(rw, r)
	})
	cfg := w.config(2 * time.Second)
	parkAfter := 300 * time.Millisecond
	cfg.Delivery.Relay.ParkAfter, cfg.Delivery.Relay.RejectProbeInterval = &parkAfter, 100*time.Millisecond
	r := serve(t, cfg)
	health, metrics := "http://"+r.addr(t, "health")+"/readyz", "http://"+r.addr(t, "metrics")+"/metrics"

	parkGroup := w.group + relay.ParkGroupSuffix
	// The relay pauses and parks the site; the parking consumer, sending
	// the parked records, is answered 404 too and pauses it.
	site := fmt.Sprintf("isolated site: integration news (site 100002, group %s): paused by HTTP 404 since ", w.group)
	parking := "; parking its records (http_404) since "
	consumer := fmt.Sprintf("isolated site: integration news (site 100002, group %s): paused by HTTP 404 since ", parkGroup)
	var code int
	var body string
	held := eventually(60*time.Second, func() bool {
		code, body = readyzNow(t, health)
		return strings.Contains(body, site) && strings.Contains(body, parking) && strings.Contains(body, consumer)
	})
	if !held || code != http.StatusOK || !strings.HasPrefix(body, "ready\n") {
		t.Fatalf("/readyz = %d %q, want 200 ready, naming the paused and parking site in both groups:\n%s...%s...\n%s...", code, body, site, parking, consumer)
	}
	t.Logf("/readyz while the site is wrong:\n%s", body)

	series := []string{
		// One series at 1 per site, although both groups paused it.
		`atrelay_sites_paused{http_response_status_code="404",integration="news"} 1` + "\n",
		`atrelay_sites_parking{integration="news"} 1` + "\n",
		fmt.Sprintf(`atrelay_records_buffered{group=%q`, w.group),
		fmt.Sprintf(`atrelay_records_buffered{group=%q`, parkGroup),
		fmt.Sprintf(`atrelay_consumer_lag{group=%q,partition="0",topic=%q`, parkGroup, parkTopic),
	}
	var text string
	if !eventually(30*time.Second, func() bool {
		text = get(t, metrics)
		for _, s := range series {
			if !strings.Contains(text, s) {
				return false
			}
		}
		return true
	}) {
		t.Errorf("/metrics lacks one of %q:\n%s", series, text)
	}

	// Fixed: the parking consumer delivers the parked events, and its
	// first delivery resumes the site in the relay too, without a new
	// record of the site to probe with.
	wrong.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w.waitDelivered(ctx)
	if !eventually(30*time.Second, func() bool {
		code, body = readyzNow(t, health)
		return body == "ready\n"
	}) {
		t.Errorf("/readyz = %d %q once the site accepts requests, want 200 \"ready\" alone", code, body)
	}
}

// readyzNow returns /readyz's status and body.
func readyzNow(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestShowOffsetsParking: with parking on, `offsets show` shows the
// parking consumer's position (group <group>.park on the parking topic)
// after the group's own, in the table and under "parking" in the JSON; a
// parking topic that does not exist is said so, not an error; with
// parking off (park_after 0s) nothing of it is shown.
// Mutations caught: ShowOffsets not adding the parking status (tried: no
// "parking consumer:" in the table, no "parking" key); ShowIfExists
// calling Show on a missing topic (tried: offsets show fails with
// "partition -1: UNKNOWN_TOPIC_OR_PARTITION").
func TestShowOffsetsParking(t *testing.T) {
	w := newWorld(t, 2, 0)
	parkTopic := w.topic + ".park"
	parkGroup := w.group + relay.ParkGroupSuffix
	off := time.Duration(0)
	tests := []struct {
		name      string
		parkAfter *time.Duration
		create    bool
		text      []string // in the table
		noText    string   // not in the table
		parking   bool     // a "parking" key in the JSON
		missing   bool
		lag       int64
	}{
		{"parking topic missing", nil, false, []string{"parking consumer:\ngroup " + parkGroup + ", topic " + parkTopic + ": the topic does not exist"}, "", true, true, 0},
		{"parked records waiting", nil, true, []string{"parking consumer:\ngroup " + parkGroup + " (", "topic " + parkTopic + "\n", "total lag 3\n"}, "", true, false, 3},
		// The topic made by the case before stays.
		{"parking off", &off, false, nil, "parking consumer", false, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.create {
				w.kafka.CreateTopic(t, parkTopic, 1)
				w.kafka.Produce(t, &kgo.Record{Topic: parkTopic, Value: []byte("a")}, &kgo.Record{Topic: parkTopic, Value: []byte("b")},
					&kgo.Record{Topic: parkTopic, Value: []byte("c")}, &kgo.Record{Topic: parkTopic, Value: []byte("d")})
				commit := kadm.Offsets{}
				commit.Add(kadm.Offset{Topic: parkTopic, Partition: 0, At: 1, LeaderEpoch: -1})
				if _, err := w.kafka.Admin(t).CommitOffsets(context.Background(), parkGroup, commit); err != nil {
					t.Fatal(err)
				}
			}
			cfg := w.config(time.Second)
			if tc.parkAfter != nil {
				cfg.Delivery.Relay.ParkAfter = tc.parkAfter
			}
			var text strings.Builder
			if err := app.ShowOffsets(context.Background(), cfg, false, &text); err != nil {
				t.Fatalf("offsets show: %v", err)
			}
			t.Log(text.String())
			if !strings.HasPrefix(text.String(), "group "+w.group+" (") {
				t.Errorf("the table does not start with the group's own position:\n%s", text.String())
			}
			for _, want := range tc.text {
				if !strings.Contains(text.String(), want) {
					t.Errorf("the table lacks %q:\n%s", want, text.String())
				}
			}
			if tc.noText != "" && strings.Contains(text.String(), tc.noText) {
				t.Errorf("the table has %q:\n%s", tc.noText, text.String())
			}

			var js strings.Builder
			if err := app.ShowOffsets(context.Background(), cfg, true, &js); err != nil {
				t.Fatalf("offsets show --output json: %v", err)
			}
			var out struct {
				Group   string `json:"group"`
				Parking *struct {
					Group      string `json:"group"`
					Topic      string `json:"topic"`
					Missing    bool   `json:"missing"`
					TotalLag   int64  `json:"total_lag"`
					Partitions []struct {
						Committed *int64 `json:"committed"`
					} `json:"partitions"`
				} `json:"parking"`
			}
			if err := json.Unmarshal([]byte(js.String()), &out); err != nil {
				t.Fatalf("%v:\n%s", err, js.String())
			}
			if out.Group != w.group || (out.Parking != nil) != tc.parking {
				t.Fatalf("JSON group %q, parking %v, want %q, parking %v:\n%s", out.Group, out.Parking != nil, w.group, tc.parking, js.String())
			}
			if p := out.Parking; p != nil && (p.Group != parkGroup || p.Topic != parkTopic || p.Missing != tc.missing || p.TotalLag != tc.lag) {
				t.Errorf("JSON parking = %+v, want group %s topic %s missing %v total_lag %d:\n%s", *p, parkGroup, parkTopic, tc.missing, tc.lag, js.String())
			}
		})
	}
}

// TestCheckConnectParkTopic: with parking on, `check --connect` checks
// the parking topic: a missing one is a WARN line, as at the service's
// start, and not a failure (the service runs; only parking cannot); an
// existing one is ok; with parking off it is not checked.
// Mutation caught: the missing parking topic reported as the other
// topics are (tried: a FAIL line, and Check returned "1 failed").
func TestCheckConnectParkTopic(t *testing.T) {
	w := newWorld(t, 1, 0)
	parkTopic := w.topic + ".park"
	off := time.Duration(0)
	tests := []struct {
		name      string
		parkAfter *time.Duration
		create    bool
		want      string
	}{
		{"missing", nil, false, "WARN park topic " + parkTopic + ": does not exist: a site failing for longer than delivery.park_after cannot be parked until it does (create it, or set delivery.park_after: 0s)\n"},
		{"parking off", &off, false, ""},
		{"present", nil, true, "ok   park topic " + parkTopic + ": 1 partition(s)\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.create {
				w.kafka.CreateTopic(t, parkTopic, 1)
			}
			cfg := w.config(time.Second)
			if tc.parkAfter != nil {
				cfg.Delivery.Relay.ParkAfter = tc.parkAfter
			}
			var out strings.Builder
			err := app.Check(context.Background(), cfg, true, &out)
			t.Log(out.String())
			if err != nil {
				t.Errorf("Check = %v, want nil: the parking topic is no failure", err)
			}
			if tc.want == "" {
				if strings.Contains(out.String(), "park topic") {
					t.Errorf("parking off, yet the parking topic was checked:\n%s", out.String())
				}
			} else if !strings.Contains(out.String(), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out.String())
			}
		})
	}
}
