package telemetry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/telemetry"
)

// TestRecordingPerRecord: the calls made for every record — Consumed,
// Settled, DeliveryLatency, Request — allocate nothing once their label set
// is cached, and each label value keeps its own series: label sets are
// cached per value, not per call site. Mutations caught (each tried once):
// the Settled cache key without the reason (reason="no_idclient" counts the
// event_not_enabled records: "settled by reason" fails); the Consumed key
// without the partition ("consumed by partition" fails); the options passed
// as a fresh variadic slice per call (1 alloc/op: "no allocation" fails).
func TestRecordingPerRecord(t *testing.T) {
	tel, err := telemetry.Setup(telemetry.Options{ServiceName: "atrelay", Version: "test", Integrations: []string{"fitness"}})
	if err != nil {
		t.Fatal(err)
	}
	m, ctx := tel.Metrics, context.Background()
	calls := map[string]func(){
		"Consumed":        func() { m.Consumed(ctx, "events", 3) },
		"Settled":         func() { m.Settled(ctx, "filtered", "event_not_enabled", 1) },
		"DeliveryLatency": func() { m.DeliveryLatency(ctx, "fitness", time.Second) },
		"Request":         func() { m.Request(ctx, "fitness", 204, time.Millisecond) },
	}
	for name, call := range calls {
		call() // the label set is built on first use
		if n := testing.AllocsPerRun(100, call); n != 0 {
			t.Errorf("%s: %v allocations a call, want 0", name, n)
		}
	}
	m.Consumed(ctx, "events", 4)
	m.Settled(ctx, "filtered", "no_idclient", 2)
	text := scrape(t, tel)
	for name, want := range map[string]string{
		"settled by reason":     `atrelay_records_settled_total{outcome="filtered",reason="no_idclient"} 2`,
		"settled other reason":  `atrelay_records_settled_total{outcome="filtered",reason="event_not_enabled"} 102`,
		"consumed by partition": `atrelay_records_consumed_total{partition="4",topic="events"} 1`,
		"consumed partition 3":  `atrelay_records_consumed_total{partition="3",topic="events"} 102`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("%s: metrics lack %q", name, want)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}
