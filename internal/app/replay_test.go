package app_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/dlqreplay"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// TestReplayDeliversThroughTheRelay is `atrelay dlq replay` end to end:
// the real dead-letter writer dead-letters five events of the news app
// (three as http_400, one as corrupt, one too large for the topic and so
// written as a pointer, faked here with its headers); a dry run changes
// nothing; replaying http_400 puts exactly those three back on the topic,
// with the original key, value and header and none of the writer's; and
// the service, started afterwards, delivers them — and nothing else, since
// nothing else is on the topic.
//
// Mutations caught: replay.go's dlqFormat with a Reason header name other
// than sinks/dlq's selects nothing (the dry-run check fails); a Prefix
// not matching the writer's headers leaves atrelay.* headers on the
// replayed records (the header check fails).
func TestReplayDeliversThroughTheRelay(t *testing.T) {
	w := newWorld(t, 2, 0)
	cfg := w.config(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	events := fixture.Generate(fixture.Options{Seed: 11, Events: 5, EventsPerVisitor: 1, Apps: []string{fixture.AppNews}})
	enc := fixture.MustEncoder("")
	values := make([][]byte, len(events)) // encoded once: a map's order makes encoding vary
	for i := range events {
		values[i] = enc.Confluent(schemaID, &events[i])
	}
	original := func(i int) *kgo.Record {
		return &kgo.Record{Topic: w.topic, Partition: int32(i % 2), Offset: int64(100 + i), Key: []byte(events[i].EventID),
			Value: values[i], Headers: []kgo.RecordHeader{{Key: "x-origin", Value: []byte("purchasely")}}}
	}
	writer, err := dlq.Open(ctx, dlq.Config{Topic: cfg.Kafka.DLQTopic, ClientOpts: []kgo.Opt{kgo.SeedBrokers(w.kafka.Brokers()...)}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	failures := []dlq.Failure{
		{Stage: "deliver", Reason: "http_400", HTTPStatus: 400, Err: fmt.Errorf("400 Bad Request")},
		{Stage: "decode", Reason: "corrupt", Err: fmt.Errorf("not Avro")},
		{Stage: "deliver", Reason: "http_400", HTTPStatus: 400, Err: fmt.Errorf("400 Bad Request")},
		{Stage: "deliver", Reason: "http_400", HTTPStatus: 400, Err: fmt.Errorf("400 Bad Request")},
	}
	for i, f := range failures {
		done := make(chan error, 1)
		writer.Write(ctx, original(i), f, func(err error) { done <- err })
		if err := <-done; err != nil {
			t.Fatalf("dead-letter %d: %v", i, err)
		}
	}
	writer.Close()
	// A pointer, as the writer makes one for a record too large for the
	// topic: no value, the too_large reason, the original one beside it.
	pointer := original(4)
	pointer.Topic, pointer.Partition, pointer.Value = cfg.Kafka.DLQTopic, 0, nil
	pointer.Headers = append(pointer.Headers,
		kgo.RecordHeader{Key: dlq.HeaderTopic, Value: []byte(w.topic)}, kgo.RecordHeader{Key: dlq.HeaderPartition, Value: []byte("0")},
		kgo.RecordHeader{Key: dlq.HeaderOffset, Value: []byte("104")}, kgo.RecordHeader{Key: dlq.HeaderReason, Value: []byte(dlq.ReasonTooLarge)},
		kgo.RecordHeader{Key: dlq.HeaderOriginalReason, Value: []byte("http_400")})
	w.kafka.Produce(t, pointer)

	var out bytes.Buffer
	if err := app.Replay(ctx, cfg, dlqreplay.Options{Reasons: []string{"http_400"}}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "dry run: 3 records would be replayed, 1 skipped") {
		t.Fatalf("dry run:\n%s", out.String())
	}
	if ends := w.kafka.EndOffsets(t, w.topic); ends[0]+ends[1] != 0 {
		t.Fatalf("the dry run produced: %v", ends)
	}
	out.Reset()
	if err := app.Replay(ctx, cfg, dlqreplay.Options{Reasons: []string{"http_400"}, Execute: true}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "replayed 3 records to their source topic; 1 skipped") || !strings.Contains(out.String(), "SKIPPED") {
		t.Fatalf("execute:\n%s", out.String())
	}
	replayed := w.kafka.ReadAll(t, w.topic, 3)
	if ends := w.kafka.EndOffsets(t, w.topic); ends[0]+ends[1] != 3 {
		t.Fatalf("source topic end offsets %v, want 3 records", ends)
	}
	for _, r := range replayed {
		i := slices.IndexFunc(events, func(e codec.Event) bool { return e.EventID == string(r.Key) })
		if i < 0 || i == 1 || i == 4 {
			t.Fatalf("replayed record with key %q is not one of the http_400 events", r.Key)
		}
		o := original(i)
		if r.Partition != o.Partition || !bytes.Equal(r.Value, o.Value) || fmt.Sprint(r.Headers) != fmt.Sprint(o.Headers) {
			t.Errorf("replayed event %d: partition %d, headers %v; want partition %d, headers %v, the original value", i, r.Partition, r.Headers, o.Partition, o.Headers)
		}
	}

	serve(t, cfg)
	if err := w.collector.WaitHits(ctx, 3); err != nil {
		t.Fatalf("the relay delivered %d of the 3 replayed events: %v", len(w.collector.Hits()), err)
	}
	var got, want []string
	for _, h := range w.collector.Hits() {
		got = append(got, h.Data["event_id"].(string))
	}
	for _, i := range []int{0, 2, 3} {
		want = append(want, events[i].EventID)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(slices.Compact(got), want) {
		t.Fatalf("delivered %v, want the http_400 events %v", got, want)
	}
}
