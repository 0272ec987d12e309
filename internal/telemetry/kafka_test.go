package telemetry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/telemetry"
	"github.com/atrelay/atrelay/internal/testkafka"
)

// TestKafkaHooks: a client with KafkaHooks counts its connections by
// broker and outcome, the bytes it wrote and read and the records it
// produced, under readable names (no ".count", no "_by" unit suffix); a
// broker's throttling is recorded by broker.
// Mutations caught: kotelView not installed (the series are
// messaging_kafka_connects_count_total and messaging_kafka_read_bytes_count_by_total);
// the throttle hook left out of KafkaHooks (no hook to call).
func TestKafkaHooks(t *testing.T) {
	tel, err := telemetry.Setup(telemetry.Options{ServiceName: "atrelay", Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	k := testkafka.New(t)
	topic := k.Name(t, "events")
	k.CreateTopic(t, topic, 1)
	cl := k.Client(t, kgo.WithHooks(tel.KafkaHooks()...))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var throttled bool
	for _, h := range tel.KafkaHooks() {
		if th, ok := h.(kgo.HookBrokerThrottle); ok {
			th.OnBrokerThrottle(kgo.BrokerMetadata{NodeID: 3}, 250*time.Millisecond, true)
			throttled = true
		}
	}
	if !throttled {
		t.Fatal("KafkaHooks has no kgo.HookBrokerThrottle")
	}
	text := scrape(t, tel)
	for _, want := range []string{
		`messaging_kafka_connects_total{node_id="seed_0",outcome="success"} `,
		`messaging_kafka_write_bytes_total{node_id=`,
		`messaging_kafka_read_bytes_total{node_id=`,
		`messaging_kafka_produce_records_total{node_id="`,
		`,topic="` + topic + `"} 1`,
		`atrelay_kafka_throttle_duration_seconds_count{node_id="3"} 1`,
		`atrelay_kafka_throttle_duration_seconds_sum{node_id="3"} 0.25`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, "_count_total") || strings.Contains(text, "_by_total") {
		t.Error("kotel's series keep their raw names")
	}
	if t.Failed() {
		t.Log(text)
	}
}
