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

func TestPrometheusExposition(t *testing.T) {
	tel, err := telemetry.Setup("atrelay", "test")
	if err != nil {
		t.Fatal(err)
	}
	m := tel.Metrics
	ctx := context.Background()
	m.Settled(ctx, "filtered", "no_idclient", 2)
	m.Settled(ctx, "filtered", "no_idclient", 1)
	m.Settled(ctx, "delivered", "", 5)
	m.Request(ctx, "fitness", 503, 20*time.Millisecond)
	m.Retry(ctx, "fitness", "connection_refused")
	m.Commit(ctx, true)
	m.Adjusted(ctx, "truncated", 2)
	m.Adjusted(ctx, "out_of_range", 1)
	m.Adjusted(ctx, "truncated", 1)
	if err := m.ObserveGauges(telemetry.Gauges{
		Buffered: func() int64 { return 42 }, Lag: func() map[int32]int64 { return map[int32]int64{3: 7} },
		Topic: "events", Group: "atrelay",
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(tel.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	text := string(body)
	for _, want := range []string{
		`atrelay_records_settled_total{otel_scope_name="github.com/atrelay/atrelay",otel_scope_schema_url="",otel_scope_version="",outcome="filtered",reason="no_idclient"} 3`,
		`outcome="delivered",reason=""} 5`,
		`atrelay_http_client_request_duration_seconds_count{http_response_status_code="503",integration="fitness"`,
		// The label is the log lines' field name for the same thing.
		`atrelay_http_client_retries_total{integration="fitness",otel_scope_name="github.com/atrelay/atrelay",otel_scope_schema_url="",otel_scope_version="",reason="connection_refused"} 1`,
		`atrelay_records_buffered{`,
		`atrelay_consumer_lag{messaging_consumer_group_name="atrelay",messaging_destination_name="events",messaging_destination_partition_id="3"`,
		`atrelay_offsets_commits_total{`,
		`atrelay_properties_adjusted_total{otel_scope_name="github.com/atrelay/atrelay",otel_scope_schema_url="",otel_scope_version="",reason="truncated"} 3`,
		`reason="out_of_range"} 1`,
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
	tel, _ := telemetry.Setup("atrelay", "bench")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tel.Metrics.Settled(ctx, "delivered", "", 1)
	}
}
