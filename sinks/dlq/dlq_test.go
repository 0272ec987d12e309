package dlq_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// bound is how long a test waits for something that must happen; reaching
// it is a failure (a hang), never a measurement.
const bound = 90 * time.Second

// writer is a Writer under test with what it reports.
type writer struct {
	*dlq.Writer
	log    *syncBuffer
	errors chan string // OnWriteError's reasons
}

// open opens a writer to topic with its lines and write errors captured.
// The short metadata age makes kgo retry an unknown topic, and notice a
// created one, in milliseconds instead of seconds.
func open(t *testing.T, k *testkafka.Cluster, topic string) *writer {
	t.Helper()
	w := &writer{log: new(syncBuffer), errors: make(chan string, 1000)}
	var err error
	w.Writer, err = dlq.Open(ctx(t), dlq.Config{
		Topic:        topic,
		ClientOpts:   []kgo.Opt{kgo.SeedBrokers(k.Brokers()...), kgo.MetadataMinAge(10 * time.Millisecond)},
		Logger:       slog.New(slog.NewTextHandler(w.log, nil)),
		OnWriteError: func(reason string) { w.errors <- reason },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// write writes rec and waits for done's error.
func (w *writer) write(t *testing.T, rec *kgo.Record, f dlq.Failure) error {
	t.Helper()
	done := make(chan error, 1)
	w.Write(ctx(t), rec, f, func(err error) { done <- err })
	return <-done
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), bound)
	t.Cleanup(cancel)
	return c
}

// TestWriteShapes writes records of every size to a DLQ topic at the default
// max.message.bytes (1 MB) and reads back what the topic holds. The large
// ones went through a source topic that takes them, as they would in the
// service.
//
// Mutations caught: skipping the size check before producing (the 5 MB
// record then fails once with MESSAGE_TOO_LARGE: OnWriteError is called);
// keeping the value in a pointer, or the headers at the "bare" shape, or the
// key at the "keyless" one (the header and value checks); a size estimate
// without the headers (the huge-headers case fails in kgo, OnWriteError).
func TestWriteShapes(t *testing.T) {
	k := testkafka.New(t)
	src, topic := k.Name(t, "src"), k.Name(t, "dlq")
	big := "16777216"
	resp, err := k.Admin(t).CreateTopic(ctx(t), 1, 1, map[string]*string{"max.message.bytes": &big}, src)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	k.CreateTopic(t, topic, 1)

	trace := kgo.RecordHeader{Key: "traceparent", Value: []byte("00-abc-def-01")}
	huge := []kgo.RecordHeader{trace}
	for i := range 3 {
		huge = append(huge, kgo.RecordHeader{Key: "h" + strconv.Itoa(i), Value: bytes.Repeat([]byte{'h'}, 700<<10)})
	}
	tests := []struct {
		name    string
		key     []byte
		value   []byte
		headers []kgo.RecordHeader
		f       dlq.Failure

		wantValue   bool   // the original value is kept
		wantKey     bool   // the original key is kept
		wantHeaders bool   // the original headers are kept
		wantReason  string // atrelay.reason
		wantDropped string // atrelay.dropped
	}{
		{
			name: "normal record kept whole", key: []byte("k"), value: []byte("v"), headers: []kgo.RecordHeader{trace},
			f:         dlq.Failure{Stage: "deliver", Reason: "http_400", Err: errors.New("bad request"), HTTPStatus: 400},
			wantValue: true, wantKey: true, wantHeaders: true, wantReason: "http_400",
		},
		{
			name: "5 MB value becomes a pointer", key: []byte("k"), value: bytes.Repeat([]byte{'v'}, 5<<20), headers: []kgo.RecordHeader{trace},
			f:       dlq.Failure{Stage: "decode", Reason: "corrupt", Err: errors.New("bad magic byte")},
			wantKey: true, wantHeaders: true, wantReason: dlq.ReasonTooLarge,
		},
		{
			name: "2 MB of headers: pointer without them", key: []byte("k"), value: []byte("v"), headers: huge,
			f:       dlq.Failure{Stage: "decode", Reason: "corrupt", Err: errors.New("bad magic byte")},
			wantKey: true, wantReason: dlq.ReasonTooLarge, wantDropped: "headers",
		},
		{
			name: "1.5 MB key: pointer without headers and key", key: bytes.Repeat([]byte{'k'}, 1536<<10), value: []byte("v"), headers: []kgo.RecordHeader{trace},
			f:          dlq.Failure{Stage: "stages", Reason: "stage_error", Err: errors.New("boom")},
			wantReason: dlq.ReasonTooLarge, wantDropped: "headers,key",
		},
	}

	var in []*kgo.Record
	for _, tt := range tests {
		in = append(in, &kgo.Record{Topic: src, Key: tt.key, Value: tt.value, Headers: tt.headers})
	}
	prod := k.Client(t, kgo.ProducerBatchMaxBytes(16<<20))
	if err := prod.ProduceSync(ctx(t), in...).FirstErr(); err != nil {
		t.Fatalf("produce to the source topic: %v", err)
	}
	consumed := k.ReadAll(t, src, len(tests))

	w := open(t, k, topic)
	for i, tt := range tests {
		if err := w.write(t, consumed[i], tt.f); err != nil {
			t.Fatalf("%s: done(%v)", tt.name, err)
		}
	}
	if want := "max_message_bytes=1048588 from=topic"; !strings.Contains(w.log.String(), want) {
		t.Errorf("Open did not read the topic's limit (%s):\n%s", want, w.log.String())
	}
	if len(w.errors) != 0 {
		t.Errorf("OnWriteError called %d times (first %q): a record was produced before it was made to fit", len(w.errors), <-w.errors)
	}
	out := k.ReadAll(t, topic, len(tests))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, src := out[i], consumed[i]
			h := headers(got)
			if h[dlq.HeaderOffset] != strconv.FormatInt(src.Offset, 10) {
				t.Fatalf("DLQ record %d is of source offset %s, want %d", i, h[dlq.HeaderOffset], src.Offset)
			}
			want := map[string]string{
				dlq.HeaderTopic: src.Topic, dlq.HeaderPartition: "0", dlq.HeaderStage: tt.f.Stage,
				dlq.HeaderReason: tt.wantReason, dlq.HeaderError: tt.f.Err.Error(), dlq.HeaderDropped: tt.wantDropped,
			}
			if tt.f.HTTPStatus != 0 {
				want[dlq.HeaderHTTPStatus] = strconv.Itoa(tt.f.HTTPStatus)
			}
			if tt.wantReason == dlq.ReasonTooLarge {
				want[dlq.HeaderOriginalReason] = tt.f.Reason
				want[dlq.HeaderSize] = strconv.Itoa(len(tt.value))
			} else {
				want[dlq.HeaderOriginalReason], want[dlq.HeaderSize] = "", ""
			}
			for _, x := range tt.headers {
				want[x.Key] = ""
				if tt.wantHeaders {
					want[x.Key] = string(x.Value)
				}
			}
			for k, v := range want {
				if h[k] != v {
					t.Errorf("header %s = %.40q, want %.40q", k, h[k], v)
				}
			}
			if _, err := time.Parse(time.RFC3339Nano, h[dlq.HeaderTime]); err != nil {
				t.Errorf("time header %q: %v", h[dlq.HeaderTime], err)
			}
			if keep := bytes.Equal(got.Value, tt.value); keep != tt.wantValue {
				t.Errorf("value of %d bytes written as %d bytes; want it kept: %v", len(tt.value), len(got.Value), tt.wantValue)
			}
			if keep := bytes.Equal(got.Key, tt.key); keep != tt.wantKey {
				t.Errorf("key of %d bytes written as %d bytes; want it kept: %v", len(tt.key), len(got.Key), tt.wantKey)
			}
		})
	}
}

// TestBrokerRefusesWhatTheLimitAllowed: the DLQ topic is created after Open
// with a max.message.bytes (10 kB) below the broker default the writer took,
// so a 100 kB record passes the writer's check and kgo's and is refused by
// the broker (kfake enforces max.message.bytes as Kafka does, on the
// compressed batch). It must then go as a pointer.
//
// Mutation caught: not shrinking the record on MESSAGE_TOO_LARGE (it is
// retried whole until ctx ends: done gets an error).
func TestBrokerRefusesWhatTheLimitAllowed(t *testing.T) {
	k := testkafka.New(t)
	topic := k.Name(t, "dlq")
	w := open(t, k, topic)
	small := "10000"
	resp, err := k.Admin(t).CreateTopic(ctx(t), 1, 1, map[string]*string{"max.message.bytes": &small}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	// Random, so that compression cannot bring it under the limit.
	value := make([]byte, 100<<10)
	rand.Read(value)
	rec := &kgo.Record{Topic: "events", Offset: 7, Key: []byte("k"), Value: value}
	if err := w.write(t, rec, dlq.Failure{Stage: "decode", Reason: "corrupt", Err: errors.New("bad")}); err != nil {
		t.Fatalf("done(%v)", err)
	}
	h := headers(k.ReadAll(t, topic, 1)[0])
	if h[dlq.HeaderReason] != dlq.ReasonTooLarge || h[dlq.HeaderSize] != "102400" || h[dlq.HeaderOriginalReason] != "corrupt" {
		t.Errorf("headers %v, want a pointer to a 102400-byte value", h)
	}
	if !slices.Contains(drain(w.errors), dlq.ReasonTooLarge) {
		t.Error(`OnWriteError never called with "too_large"`)
	}
}

// TestMissingTopicThenCreated: a write to a DLQ topic that does not exist
// fails, is retried, counted and logged once at ERROR; once the topic is
// created it succeeds, done(nil) is called and the recovery is logged once.
// (The 30 s summaries are TestWriteLog's, on a fake clock.)
//
// Mutations caught: calling done(nil) on a failed attempt; not calling
// OnWriteError (the wait for it fails at the bound); logging every failure
// (two "write failed" lines); giving up after some attempts (done is called
// before the topic exists); not logging the recovery.
func TestMissingTopicThenCreated(t *testing.T) {
	k := testkafka.New(t)
	topic := k.Name(t, "dlq")
	w := open(t, k, topic)
	done := make(chan error, 1)
	rec := &kgo.Record{Topic: "events", Partition: 2, Offset: 41, Value: []byte("v")}
	w.Write(ctx(t), rec, dlq.Failure{Stage: "decode", Reason: "corrupt"}, func(err error) { done <- err })

	for range 2 { // two failed attempts: the writer retries
		select {
		case reason := <-w.errors:
			if reason != "unknown_topic" {
				t.Errorf("OnWriteError(%q), want unknown_topic", reason)
			}
		case err := <-done:
			t.Fatalf("done(%v) while the topic does not exist", err)
		case <-ctx(t).Done():
			t.Fatal("OnWriteError not called for writes to a missing topic")
		}
	}
	lines := w.log.String()
	// Open fell back to the broker's message.max.bytes (Kafka's default on
	// kfake and on the test broker) for the topic that is not there.
	if !strings.Contains(lines, "max_message_bytes=1048588 from=broker") {
		t.Errorf("Open did not take the broker's limit:\n%s", lines)
	}
	if n := strings.Count(lines, `msg="dlq write failed"`); n != 1 {
		t.Fatalf("%d first-failure lines, want 1:\n%s", n, lines)
	}
	for _, want := range []string{"level=ERROR", "topic=" + topic, "source_topic=events", "partition=2", "offset=41", "UNKNOWN_TOPIC_OR_PARTITION"} {
		if !strings.Contains(lines, want) {
			t.Errorf("the failure lines lack %q:\n%s", want, lines)
		}
	}

	k.CreateTopic(t, topic, 1)
	if err := <-done; err != nil {
		t.Fatalf("done(%v) after the topic was created", err)
	}
	lines = w.log.String()
	errorLines := strings.Count(lines, "level=ERROR")
	if first, summaries := strings.Count(lines, `msg="dlq write failed"`), strings.Count(lines, "failures in the last"); first != 1 || errorLines != first+summaries {
		t.Errorf("want one first-failure line and only summaries after it; got:\n%s", lines)
	}
	if n := strings.Count(lines, `level=INFO msg="dlq write recovered"`); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, lines)
	}
	if got := headers(k.ReadAll(t, topic, 1)[0]); got[dlq.HeaderOffset] != "41" {
		t.Errorf("DLQ record of offset %s, want 41", got[dlq.HeaderOffset])
	}
}

// TestWriteEnds: a write that cannot succeed ends with its context's error,
// or ErrClosed when the writer is closed, never nil; a write after Close
// ends at once.
//
// Mutations caught: done(nil) when ctx ends; Close not ending the writes in
// flight (Close never returns); a retry goroutine that outlives Close
// (goleak in TestMain).
func TestWriteEnds(t *testing.T) {
	k := testkafka.New(t)
	w := open(t, k, k.Name(t, "missing"))
	rec := &kgo.Record{Topic: "events", Value: []byte("v")}
	f := dlq.Failure{Stage: "decode", Reason: "corrupt"}

	c, cancel := context.WithCancel(ctx(t))
	byCtx, byClose := make(chan error, 1), make(chan error, 1)
	w.Write(c, rec, f, func(err error) { byCtx <- err })
	w.Write(ctx(t), rec, f, func(err error) { byClose <- err })
	<-w.errors // both are retrying, or at least one: either way unacknowledged
	cancel()
	if err := <-byCtx; !errors.Is(err, context.Canceled) {
		t.Errorf("done(%v) after ctx ended, want context.Canceled", err)
	}
	w.Close()
	if err := <-byClose; !errors.Is(err, dlq.ErrClosed) {
		t.Errorf("done(%v) for a write Close ended, want ErrClosed", err)
	}
	if err := w.write(t, rec, f); !errors.Is(err, dlq.ErrClosed) {
		t.Errorf("done(%v) for a write after Close, want ErrClosed", err)
	}
}

func headers(r *kgo.Record) map[string]string {
	h := map[string]string{}
	for _, x := range r.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

func drain(c chan string) []string {
	var out []string
	for {
		select {
		case s := <-c:
			out = append(out, s)
		default:
			return out
		}
	}
}

// syncBuffer is a bytes.Buffer safe to write from the writer's goroutines
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
