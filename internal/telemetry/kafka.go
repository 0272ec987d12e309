package telemetry

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// kafkaHooks returns the Kafka clients' metric hooks on mp: kotel's meter,
// its connection counter merged (one series per broker and outcome, so that
// a failure shows beside the successes), and the brokers' throttling.
func kafkaHooks(mp metric.MeterProvider) ([]kgo.Hook, error) {
	h, err := mp.Meter("github.com/atrelay/atrelay").Float64Histogram("atrelay.kafka.throttle.duration", metric.WithUnit("s"),
		metric.WithDescription("Throttling imposed by a broker (quotas), by broker (node_id)."),
		metric.WithExplicitBucketBoundaries(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30))
	if err != nil {
		return nil, fmt.Errorf("telemetry: kafka throttle histogram: %w", err)
	}
	meter := kotel.NewMeter(kotel.MeterProvider(mp), kotel.WithMergedConnectsMeter())
	return []kgo.Hook{meter, throttle{h}}, nil
}

// kotelScope is the instrumentation scope of kotel's meter.
const kotelScope = "github.com/twmb/franz-go/plugin/kotel"

// kotelView renames kotel's instruments for readable series: no ".count"
// suffix (a counter is a count), and bytes in UCUM's "By" rather than
// kotel's "by", which the Prometheus exporter would append as "_by":
// messaging.kafka.read_bytes.count (by) becomes messaging.kafka.read_bytes
// (By), messaging_kafka_read_bytes_total in Prometheus.
func kotelView(i sdkmetric.Instrument) (sdkmetric.Stream, bool) {
	if i.Scope.Name != kotelScope {
		return sdkmetric.Stream{}, false
	}
	unit := i.Unit
	switch unit {
	case "by":
		unit = "By"
	case "1":
		unit = ""
	}
	return sdkmetric.Stream{Name: strings.TrimSuffix(i.Name, ".count"), Description: i.Description, Unit: unit}, true
}

// throttle records the brokers' throttling.
type throttle struct{ h metric.Float64Histogram }

var _ kgo.HookBrokerThrottle = throttle{}

// OnBrokerThrottle records one throttled response.
func (t throttle) OnBrokerThrottle(meta kgo.BrokerMetadata, d time.Duration, _ bool) {
	t.h.Record(context.Background(), d.Seconds(), metric.WithAttributes(attribute.String("node_id", nodeID(meta.NodeID))))
}

// nodeID names a broker as kotel does: its id, or seed_<n> for the n-th
// seed broker before its id is known.
func nodeID(id int32) string {
	if id < 0 {
		return "seed_" + strconv.Itoa(int(id)-math.MinInt32)
	}
	return strconv.Itoa(int(id))
}
