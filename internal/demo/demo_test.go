package demo_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/demo"
	"github.com/atrelay/atrelay/internal/fixture"
)

// TestDemoSummary runs the demo and checks its numbers against the fixture
// it produced, computed here from the same stream and deploy/demo.yaml's
// integrations.
func TestDemoSummary(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var out bytes.Buffer
	const n = 3000
	s, err := demo.Run(ctx, demo.Options{Events: n, Out: &out, Progress: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	// Independent expectation from the fixture (the demo's seed and shape).
	events := fixture.Generate(fixture.Options{Seed: 2026, Events: n, EventsPerVisitor: 3})
	fitness := map[string]bool{}
	for _, e := range fixture.TableEvents {
		fitness[e] = true
	}
	news := map[string]bool{"SUBSCRIPTION_STARTED": true, "SUBSCRIPTION_RENEWED": true, "TRIAL_STARTED": true, "TRIAL_CONVERTED": true,
		"TRANSACTION_PROCESSED": true, "INTRO_OFFER_STARTED": true, "PROMO_CODE_STARTED": true}
	want := map[string]int64{}
	perSite := map[int64]map[string]int{612345: {}, 623456: {}}
	for _, ev := range events {
		switch ev.AppID {
		case fixture.AppFitness:
			switch {
			case ev.Environment != "PRODUCTION":
				want["environment_not_enabled"]++
			case !fitness[ev.EventName]:
				want["event_not_enabled"]++
			case ev.UserAttributes["at_internet_id_client"] == "":
				want["no_idclient"]++
			default:
				name := strings.ToLower(ev.EventName)
				switch ev.EventName {
				case "SUBSCRIPTION_STARTED":
					name = "subscription.started"
				case "TRIAL_CONVERTED":
					name = "trial.converted"
				}
				perSite[612345][name]++
			}
		case fixture.AppNews:
			switch {
			case !news[ev.EventName]:
				want["event_not_enabled"]++
			case ev.UserAttributes["at_internet_id_client"] == "" && ev.UserID == "":
				want["no_idclient"]++
			default:
				perSite[623456][strings.ToLower(ev.EventName)]++
			}
		case fixture.AppGames:
			want["integration_disabled"]++
		default:
			want["no_integration"]++
		}
	}
	if s.Produced != n+demo.Poison || s.Consumed != int64(s.Produced) {
		t.Errorf("produced %d consumed %d, want %d", s.Produced, s.Consumed, n+demo.Poison)
	}
	if s.DLQ != demo.Poison {
		t.Errorf("DLQ = %d, want %d", s.DLQ, demo.Poison)
	}
	for reason, w := range want {
		if s.Filtered[reason] != w {
			t.Errorf("filtered %s = %d, want %d", reason, s.Filtered[reason], w)
		}
	}
	for site, names := range perSite {
		for name, w := range names {
			if s.PerSite[site][name] != w {
				t.Errorf("site %d %s = %d hits, want %d", site, name, s.PerSite[site][name], w)
			}
		}
	}
	// The parking topic exists: the service's start check is silent.
	// Mutation caught: the cluster not seeding the parking topic (tried:
	// the warning "park: the parking topic cannot be found").
	for _, w := range s.Warnings {
		if strings.Contains(w, "parking topic") {
			t.Errorf("the service warned: %s", w)
		}
	}
	if s.Rejected != 0 || len(s.Requests) == 0 {
		t.Errorf("rejected %d, requests shown %d", s.Rejected, len(s.Requests))
	}
	for _, line := range []string{"Summary:", "integration fitness (site 612345)", "dropped, by reason:", "POST /subscription?s="} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("output lacks %q", line)
		}
	}
	checkTraceTree(t, out.String())
}

// checkTraceTree checks the trace the demo ends with: the producer's send
// span, then each span one level further in, poll, process (delivered,
// with its event id), the request linked to it (204) and its attempt,
// each with a duration; no query (no idclient) in the attempt's url.full.
// Mutations caught (each tried once): the linked requests left out of
// the tree (no collect line); the process span's links not followed by
// the sink's LinkRequest (no collect line either).
func checkTraceTree(t *testing.T, out string) {
	t.Helper()
	_, tree, ok := strings.Cut(out, "the trace of one delivered event (trace ")
	if !ok {
		t.Fatalf("no trace tree in:\n%s", out)
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(`^    send purchasely\.subscription-events  producer  [0-9.]+[µm]?s \(at \+0s\)$`),
		regexp.MustCompile(`^    └─ poll purchasely\.subscription-events  client  [0-9.]+[µm]?s `),
		regexp.MustCompile(`^       └─ process purchasely\.subscription-events  consumer  [0-9.]+[µm]?s `),
		regexp.MustCompile(`^          │  .*atrelay\.event_id=[0-9a-f-]{36} atrelay\.integration=\w+ atrelay\.outcome=delivered$`),
		regexp.MustCompile(`^          └─ collect \w+  internal  [0-9.]+[µm]?s \(at \+[0-9.]+[µm]?s\)  \(linked: the request's own trace [0-9a-f]{32}\)$`),
		regexp.MustCompile(`^             │  .*atrelay\.outcome=delivered http\.response\.status_code=204$`),
		regexp.MustCompile(`^             └─ POST  client  [0-9.]+[µm]?s `),
		regexp.MustCompile(`^                   http\.response\.status_code=204 url\.full=http://127\.0\.0\.1:\d+/\w+$`),
	}
	i := 0
	for line := range strings.Lines(tree) {
		line = strings.TrimSuffix(line, "\n")
		if i < len(want) && want[i].MatchString(line) {
			i++
		}
	}
	if i < len(want) {
		t.Errorf("trace tree: no line matching %s in:\n%s", want[i], tree)
	}
}
