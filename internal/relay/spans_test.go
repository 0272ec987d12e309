package relay_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/atrelay/atrelay/internal/fixture"
)

// TestMessageKeyOnlyWhenConfigured: a record's key (a visitor id) is on
// neither its receive nor its process span by default, and on both as
// messaging.kafka.message.key with telemetry.record_message_key; the rest
// of the messaging attributes are there either way.
// Mutations caught (each tried once): the key recorded whatever the
// option says (the default case fails); the option not passed from the
// configuration to the tracer in app.Build (the recorded case fails).
func TestMessageKeyOnlyWhenConfigured(t *testing.T) {
	for _, withKey := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "record_message_key"}[withKey], func(t *testing.T) {
			e := newEnv(t, 1)
			ev := fixture.Generate(fixture.Options{Seed: 11, Events: 1, Apps: []string{fixture.AppNews}, SandboxShare: -1, OnlyTableEvents: true})[0]
			ev.EventName = "SUBSCRIPTION_STARTED"
			const key = "visitor-7f3a"
			e.kafka.Produce(t, &kgo.Record{Topic: e.topic, Partition: 0, Key: []byte(key), Value: fixture.MustEncoder("").Confluent(schemaID, &ev)})
			e.mu.Lock()
			e.records = append(e.records, record{partition: 0, offset: 0, eventID: ev.EventID, want: expect(&ev)})
			e.byEvent[ev.EventID] = e.records[0]
			e.mu.Unlock()

			rec := tracetest.NewSpanRecorder()
			opts, report := e.watchCommits()
			opts.TracerProvider = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			cfg := e.config(200, 5*time.Second)
			cfg.Telemetry.RecordMessageKey = withKey
			e.start(cfg, opts)
			e.finish(waitCtx(t), report)

			seen := 0
			for _, s := range rec.Ended() {
				if !strings.HasPrefix(s.Name(), "poll ") && !strings.HasPrefix(s.Name(), "process ") {
					continue
				}
				seen++
				got := map[attribute.Key]attribute.Value{}
				for _, a := range s.Attributes() {
					got[a.Key] = a.Value
				}
				k, ok := got["messaging.kafka.message.key"]
				if ok != withKey || (withKey && k.AsString() != key) {
					t.Errorf("%s: messaging.kafka.message.key %q (present %v), want present %v", s.Name(), k.AsString(), ok, withKey)
				}
				if got["messaging.destination.partition.id"].AsString() != "0" || got["messaging.destination.name"].AsString() != e.topic ||
					got["messaging.consumer.group.name"].AsString() != e.group {
					t.Errorf("%s: attributes %v", s.Name(), got)
				}
			}
			if seen != 2 {
				t.Errorf("%d receive and process spans, want 2", seen)
			}
		})
	}
}
