package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"github.com/atrelay/atrelay/internal/telemetry"
)

// TestOffsetGapMetric: the relay's 0 at assignment makes the series exist,
// and the records lost add up per topic, whatever the partition.
// Mutation caught: OffsetGap labelling by partition too (the series of the
// topic is split and never reads 7).
func TestOffsetGapMetric(t *testing.T) {
	tel, err := telemetry.Setup(telemetry.Options{ServiceName: "atrelay", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	m, ctx := tel.Metrics, context.Background()
	m.OffsetGap(ctx, "events", 0, 0)
	if got, want := scrape(t, tel), `atrelay_consumer_offset_gap_records_total{topic="events"} 0`; !strings.Contains(got, want) {
		t.Errorf("metrics lack %q:\n%s", want, got)
	}
	m.OffsetGap(ctx, "events", 0, 4)
	m.OffsetGap(ctx, "events", 3, 3)
	if got, want := scrape(t, tel), `atrelay_consumer_offset_gap_records_total{topic="events"} 7`; !strings.Contains(got, want) {
		t.Errorf("metrics lack %q:\n%s", want, got)
	}
}
