package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/atrelay/atrelay/internal/telemetry"
)

// TestIsolationMetrics: the bisection counters exist at 0 per integration
// from the start, count bisections and their requests, and the paused
// series of a site and status is 1 while paused and 0 after.
// Mutations caught: zero not adding the bisection series (no 0-valued
// line for "games"); SitePaused adding 1 on resume (the series ends at 2).
func TestIsolationMetrics(t *testing.T) {
	tel, err := telemetry.Setup(telemetry.Options{ServiceName: "atrelay", Version: "test", Integrations: []string{"fitness", "games"}})
	if err != nil {
		t.Fatal(err)
	}
	start := scrape(t, tel)
	for _, want := range []string{
		`atrelay_delivery_bisections_total{integration="games"} 0`,
		`atrelay_delivery_bisection_requests_total{integration="fitness"} 0`,
	} {
		if !strings.Contains(start, want) {
			t.Errorf("metrics at start lack %q", want)
		}
	}
	m, ctx := tel.Metrics, context.Background()
	m.Bisected(ctx, "fitness", 10)
	m.Bisected(ctx, "fitness", 4)
	m.SitePaused(ctx, "games", 404, true)
	paused := scrape(t, tel)
	m.SitePaused(ctx, "games", 404, false)
	resumed := scrape(t, tel)
	for _, c := range []struct{ text, want string }{
		{paused, `atrelay_delivery_bisections_total{integration="fitness"} 2`},
		{paused, `atrelay_delivery_bisection_requests_total{integration="fitness"} 14`},
		{paused, `atrelay_sites_paused{http_response_status_code="404",integration="games"} 1`},
		{resumed, `atrelay_sites_paused{http_response_status_code="404",integration="games"} 0`},
	} {
		if !strings.Contains(c.text, c.want) {
			t.Errorf("metrics lack %q:\n%s", c.want, c.text)
		}
	}
}
