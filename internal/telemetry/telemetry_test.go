package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/telemetry"
)

// scrape returns what tel's /metrics serves.
func scrape(t *testing.T, tel *telemetry.Telemetry) string {
	t.Helper()
	srv := httptest.NewServer(tel.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// TestPrometheusExposition: /metrics serves atrelay's series with their
// labels and without otel_scope_* labels, the Go runtime and process
// metrics, and, before anything happened, every counter series known at
// start at 0: per integration, per settlement outcome and finite reason,
// commit result, DLQ write error, rebalance kind and dropped-span reason.
// Mutations caught (each tried once): otelprom.WithoutScopeInfo removed
// (otel_scope_name on every series); the Go and process collectors not
// registered (no go_goroutines, process_resident_memory_bytes); zero not
// called (no 0-valued series for "fitness" or "games"); Rebalance counting
// nothing (the kind="lost" line stays at 0).
func TestPrometheusExposition(t *testing.T) {
	tel, err := telemetry.Setup(telemetry.Options{ServiceName: "atrelay", Version: "test", Integrations: []string{"fitness", "games"}})
	if err != nil {
		t.Fatal(err)
	}
	start := scrape(t, tel)
	for _, want := range []string{
		`atrelay_http_client_retries_total{integration="games",reason="connection_refused"} 0`,
		`atrelay_http_client_retries_total{integration="fitness",reason="http_503"} 0`,
		`atrelay_records_settled_total{outcome="delivered",reason=""} 0`,
		`atrelay_records_settled_total{outcome="filtered",reason="no_idclient"} 0`,
		`atrelay_records_settled_total{outcome="dlq",reason="corrupt"} 0`,
		`atrelay_offsets_commits_total{result="error"} 0`,
		`atrelay_dlq_write_errors_total{reason="timeout"} 0`,
		`atrelay_consumer_rebalances_total{kind="lost"} 0`,
		`atrelay_records_abandoned_total{reason="revoked"} 0`,
		`atrelay_telemetry_spans_dropped_total{reason="queue_full"} 0`,
		`go_goroutines `,
		`go_memstats_heap_alloc_bytes `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(start, want) {
			t.Errorf("metrics at start lack %q", want)
		}
	}
	if strings.Contains(start, "otel_scope_") {
		t.Error("metrics carry otel_scope_* labels")
	}
	if t.Failed() {
		t.Log(start)
	}
	m := tel.Metrics
	ctx := context.Background()
	m.Rebalance(ctx, telemetry.RebalanceLost)
	m.Settled(ctx, "filtered", "no_idclient", 2)
	m.Settled(ctx, "filtered", "no_idclient", 1)
	m.Settled(ctx, "delivered", "", 5)
	m.Request(ctx, "fitness", 503, 20*time.Millisecond)
	m.Retry(ctx, "fitness", "connection_refused")
	m.Commit(ctx, true)
	m.Adjusted(ctx, "truncated", 2)
	m.Adjusted(ctx, "out_of_range", 1)
	m.Adjusted(ctx, "truncated", 1)
	// The relay's and its parking consumer's series stand apart by group.
	if err := m.ObserveGauges(telemetry.Gauges{
		Buffered: func() int64 { return 42 }, Lag: func() map[int32]int64 { return map[int32]int64{3: 7} },
		Topic: "events", Group: "atrelay",
	}, telemetry.Gauges{
		Buffered: func() int64 { return 5 }, Lag: func() map[int32]int64 { return map[int32]int64{0: 9} },
		Topic: "events.park", Group: "atrelay.park",
	}); err != nil {
		t.Fatal(err)
	}
	text := scrape(t, tel)
	for _, want := range []string{
		`atrelay_records_settled_total{outcome="filtered",reason="no_idclient"} 3`,
		`atrelay_records_settled_total{outcome="delivered",reason=""} 5`,
		`atrelay_http_client_request_duration_seconds_count{http_response_status_code="503",integration="fitness"}`,
		// The label is the log lines' field name for the same thing.
		`atrelay_http_client_retries_total{integration="fitness",reason="connection_refused"} 1`,
		`atrelay_http_client_retries_total{integration="games",reason="connection_refused"} 0`,
		`atrelay_records_buffered{group="atrelay"} 42`,
		`atrelay_consumer_lag{group="atrelay",partition="3",topic="events"} 7`,
		`atrelay_records_buffered{group="atrelay.park"} 5`,
		`atrelay_consumer_lag{group="atrelay.park",partition="0",topic="events.park"} 9`,
		`atrelay_offsets_commits_total{result="ok"} 1`,
		`atrelay_consumer_rebalances_total{kind="lost"} 1`,
		`atrelay_properties_adjusted_total{reason="truncated"} 3`,
		`atrelay_properties_adjusted_total{reason="out_of_range"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

func TestHealth(t *testing.T) {
	h := &telemetry.Health{}
	srv := httptest.NewServer(h.Handler())
	defer srv.Close()
	status := func(path string) int {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status("/healthz") != 200 || status("/readyz") != 503 {
		t.Fatal("before ready: want healthz 200, readyz 503")
	}
	h.SetReady(true)
	if status("/readyz") != 200 {
		t.Fatal("ready: want readyz 200")
	}
	h.SetReady(false)
	if status("/readyz") != 503 {
		t.Fatal("shutting down: want readyz 503")
	}
}

func BenchmarkSettled(b *testing.B) {
	tel, _ := telemetry.Setup(telemetry.Options{ServiceName: "atrelay", Version: "bench"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tel.Metrics.Settled(ctx, "delivered", "", 1)
	}
}
