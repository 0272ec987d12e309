package dlq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/sinks/dlq"
)

func TestWriteKeepsRecordAndAddsHeaders(t *testing.T) {
	k := testkafka.New(t)
	topic := k.Name(t, "dlq")
	k.CreateTopic(t, topic, 1)
	w := dlq.New(k.Client(t), topic)
	src := &kgo.Record{Topic: "events", Partition: 3, Offset: 1200, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-def-01")}}}
	done := make(chan error, 1)
	w.Write(context.Background(), src, dlq.Failure{Stage: "deliver", Reason: "http_400", Err: errors.New("bad request"), HTTPStatus: 400}, func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := k.ReadAll(t, topic, 1)[0]
	h := map[string]string{}
	for _, x := range got.Headers {
		h[x.Key] = string(x.Value)
	}
	want := map[string]string{
		"traceparent": "00-abc-def-01", dlq.HeaderTopic: "events", dlq.HeaderPartition: "3", dlq.HeaderOffset: "1200",
		dlq.HeaderStage: "deliver", dlq.HeaderReason: "http_400", dlq.HeaderError: "bad request", dlq.HeaderHTTPStatus: "400",
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q", k, h[k], v)
		}
	}
	if string(got.Key) != "k" || string(got.Value) != "v" {
		t.Errorf("key/value %q/%q not kept", got.Key, got.Value)
	}
	if _, err := time.Parse(time.RFC3339Nano, h[dlq.HeaderTime]); err != nil {
		t.Errorf("time header %q: %v", h[dlq.HeaderTime], err)
	}
}

// TestUnwritableDLQNeverReportsSuccess: with a DLQ topic that does not
// exist, done must not be called with nil; it gets the ctx error once the
// caller gives up.
func TestUnwritableDLQNeverReportsSuccess(t *testing.T) {
	k := testkafka.New(t)
	failed := failures(make(chan error, 1))
	cl := k.Client(t, kgo.RecordDeliveryTimeout(time.Second), kgo.WithHooks(failed))
	w := dlq.New(cl, k.Name(t, "missing"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w.Write(ctx, &kgo.Record{Topic: "events", Value: []byte("v")}, dlq.Failure{Stage: "decode", Reason: "corrupt"}, func(err error) { done <- err })
	<-failed // the broker refused the first attempt
	select {
	case err := <-done:
		t.Fatalf("done(%v) before the caller gave up", err)
	default:
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("done(nil) for a record the broker never acknowledged")
	}
}

// failures reports each failed produce attempt.
type failures chan error

var _ kgo.HookProduceRecordUnbuffered = failures(nil)

func (f failures) OnProduceRecordUnbuffered(_ *kgo.Record, err error) {
	if err != nil {
		select {
		case f <- err:
		default:
		}
	}
}
