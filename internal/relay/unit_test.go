package relay_test

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
)

// The service with stub decoder, stages and sink: what the relay itself
// decides, without Avro or HTTP.

// stubDecoder takes a record's value as its event id.
type stubDecoder struct{}

func (stubDecoder) DecodeInto(_ context.Context, v []byte, ev *codec.Event) error {
	ev.EventID = string(v)
	return nil
}

var stubSite = &pipeline.Site{Integration: "stub", ID: 1, Endpoint: "http://127.0.0.1/event"}

// stubStages routes every event to stubSite, one visitor per event, and
// keeps the event id as the body (the relay has no Encode here).
var stubStages stubChain

type stubChain struct{}

func (stubChain) Process(_ context.Context, h *pipeline.Hit) (pipeline.Report, error) {
	h.Site, h.IDClient = stubSite, h.Event.EventID
	h.Body = append(h.Body[:0], h.Event.EventID...)
	return pipeline.Report{}, nil
}

// scriptedSink answers each send with the next settlement of its script,
// then Delivered; it records what it delivered.
type scriptedSink struct {
	mu        sync.Mutex
	script    []pipeline.Settlement
	delivered map[string]int
	sends     int
}

func (s *scriptedSink) Send(_ context.Context, req pipeline.Request) pipeline.Settlement {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	if len(s.script) > 0 {
		st := s.script[0]
		s.script = s.script[1:]
		return st
	}
	for _, h := range req.Hits {
		s.delivered[string(h.Body)]++
	}
	return pipeline.Settlement{Outcome: pipeline.Delivered, Status: 204}
}

// runStub runs a relay with the stubs over records 0..n-1 of a new topic
// until the group committed the end offsets, and returns its metrics.
func runStub(t *testing.T, n int, sink relay.Sink) *counter {
	t.Helper()
	k := testkafka.New(t)
	topic, group := k.Name(t, "events"), k.Name(t, "group")
	k.CreateTopic(t, topic, 2)
	k.CreateTopic(t, topic+".dlq", 1)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 2), Value: []byte{byte('a' + i)}})
	}
	k.Produce(t, recs...)
	m := newCounter()
	r, err := relay.New(relay.Config{
		Topic: topic, Group: group, DLQTopic: topic + ".dlq",
		Batch: batch.Config{MaxEvents: 10, MaxBytes: 1 << 20, Linger: time.Millisecond},
		Delivery: relay.Delivery{MaxBufferedEvents: 100, CommitInterval: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
			Concurrency: 2, Backoff: backoff.Config{Min: time.Millisecond, Max: 5 * time.Millisecond}},
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(k.Brokers()...)},
		Decoder:    stubDecoder{}, Stages: stubStages, Sink: sink, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	wait := waitCtx(t)
	ends := k.EndOffsets(t, topic)
	for {
		select { // after a commit, so that the group exists
		case <-m.commits:
		case <-wait.Done():
			t.Fatalf("the group never committed the end offsets %v", ends)
		}
		if maps.Equal(k.Committed(t, group, topic), ends) {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRetryLaterIsSentAgain: a sink that answers retry-later while the
// service runs (its own retry budget ran out) does not strand the records:
// they are sent again until delivered, none is released unsettled, and the
// group commits the end.
// Mutation caught: send() abandoning a retry-later request (the pre-fix
// "retry-later means shutdown"): the records are never delivered and
// nothing commits.
func TestRetryLaterIsSentAgain(t *testing.T) {
	later := pipeline.Settlement{Outcome: pipeline.RetryLater, Reason: "http_503", Status: 503}
	sink := &scriptedSink{script: []pipeline.Settlement{later, later, later}, delivered: map[string]int{}}
	m := runStub(t, 6, sink)
	if len(sink.delivered) != 6 || sink.sends < 9 {
		t.Fatalf("delivered %v in %d sends, want 6 events after 3 retry-later answers", sink.delivered, sink.sends)
	}
	if n := m.abandoned(); n != 0 {
		t.Fatalf("%d records released unsettled", n)
	}
}

// TestRejectedGoesToDLQ: a rejected request's records are dead-lettered
// and settled, counted with the sink's reason.
// Mutation caught: settling a rejected request as delivered (the DLQ
// outcome is never counted).
func TestRejectedGoesToDLQ(t *testing.T) {
	rejected := pipeline.Settlement{Outcome: pipeline.Rejected, Reason: "http_400", Status: 400}
	sink := &scriptedSink{script: []pipeline.Settlement{rejected}, delivered: map[string]int{}}
	m := runStub(t, 4, sink)
	if got := m.get(pipeline.Rejected.String(), "http_400"); got != 1 || len(sink.delivered) != 3 {
		t.Fatalf("dlq http_400 = %d, delivered %v; want 1 and 3", got, sink.delivered)
	}
}
