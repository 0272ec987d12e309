package relay_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// The service with stub decoder, stages and sink: what the relay itself
// decides, without Avro or HTTP.

// stubDecoder takes a record's value as its event id.
type stubDecoder struct{}

func (stubDecoder) DecodeIntoShared(_ context.Context, v []byte, ev *codec.Event) error {
	ev.EventID = string(v)
	return nil
}

var stubSite = &pipeline.Site{Integration: "stub", ID: 1, Endpoint: "http://127.0.0.1/event"}

// stagesFunc adapts a function to relay.Stages, reporting nothing adjusted.
type stagesFunc func(ctx context.Context, h *pipeline.Hit) error

func (f stagesFunc) Process(ctx context.Context, h *pipeline.Hit) (pipeline.Report, error) {
	return pipeline.Report{}, f(ctx, h)
}

// stubStages routes every event to stubSite, one visitor per event, and
// keeps the event id as the body (the relay has no Encode here).
var stubStages = stagesFunc(func(_ context.Context, h *pipeline.Hit) error {
	h.Site, h.IDClient = stubSite, h.Event.EventID
	h.Body = append(h.Body[:0], h.Event.EventID...)
	return nil
})

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
	if s.delivered == nil {
		s.delivered = map[string]int{}
	}
	for _, h := range req.Hits {
		s.delivered[string(h.Body)]++
	}
	return pipeline.Settlement{Outcome: pipeline.Delivered, Status: 204}
}

func (s *scriptedSink) count(body string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[body]
}

// stub is what a unit test changes in the relay it runs; the zero value is
// stubDecoder, stubStages, a 10 ms commit interval, a 5 s shutdown timeout
// and 2 requests at a time.
type stub struct {
	decoder relay.Decoder
	stages  stagesFunc
	sink    relay.Sink
	metrics relay.Metrics
	logger  *slog.Logger
	onReady func(bool)
	// commit is the commit interval; shutdown bounds the drain at a revoke
	// and at shutdown.
	commit, shutdown time.Duration
	// concurrency is how many requests are sent at a time; 0 means 2.
	concurrency int
	// batch is how hits are batched; the zero value means 10 events or a
	// millisecond.
	batch batch.Config
	// probe is delivery.reject_probe_interval; 0 means 10 ms.
	probe time.Duration
	// parkAfter is delivery.park_after, with the parking topic
	// <topic>.park; 0 means no parking.
	parkAfter time.Duration
	// startLatest is kafka.start_from: latest.
	startLatest bool
}

// newStubRelay is the one place the unit tests build a relay.Config: when
// the Config changes, only this function does.
func newStubRelay(t *testing.T, k *testkafka.Cluster, topic, group string, s stub) *relay.Relay {
	t.Helper()
	if s.decoder == nil {
		s.decoder = stubDecoder{}
	}
	if s.stages == nil {
		s.stages = stubStages
	}
	if s.commit == 0 {
		s.commit = 10 * time.Millisecond
	}
	if s.shutdown == 0 {
		s.shutdown = 5 * time.Second
	}
	if s.concurrency == 0 {
		s.concurrency = 2
	}
	if s.batch == (batch.Config{}) {
		s.batch = batch.Config{MaxEvents: 10, MaxBytes: 1 << 20, Linger: time.Millisecond}
	}
	if s.probe == 0 {
		s.probe = 10 * time.Millisecond
	}
	parkTopic := ""
	if s.parkAfter > 0 {
		parkTopic = topic + ".park"
	}
	r, err := relay.New(relay.Config{
		Topic: topic, Group: group, DLQTopic: topic + ".dlq", ParkTopic: parkTopic,
		Batch: s.batch, StartLatest: s.startLatest,
		Delivery: relay.Delivery{MaxBufferedEvents: 100, CommitInterval: s.commit, ShutdownTimeout: s.shutdown,
			Concurrency: s.concurrency, Backoff: backoff.Config{Min: time.Millisecond, Max: 5 * time.Millisecond},
			RejectProbeInterval: s.probe, ParkAfter: &s.parkAfter},
		ClientOpts: []kgo.Opt{kgo.SeedBrokers(k.Brokers()...)},
		Decoder:    s.decoder, Stages: s.stages, Sink: s.sink, Metrics: s.metrics, Logger: s.logger, OnReady: s.onReady,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// runRelay runs r until the returned stop (or the test's end) cancels it,
// and fails the test if Run does not return nil.
func runRelay(t *testing.T, r *relay.Relay) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// stubTopic is a unit test's topic, its dead-letter topic and its group.
type stubTopic struct {
	k            *testkafka.Cluster
	topic, group string
}

func newStubTopic(t *testing.T, partitions int32) *stubTopic {
	t.Helper()
	k := testkafka.New(t)
	s := &stubTopic{k: k, topic: k.Name(t, "events"), group: k.Name(t, "group")}
	k.CreateTopic(t, s.topic, partitions)
	k.CreateTopic(t, s.topic+".dlq", 1)
	return s
}

// value names record i of partition p: "p/i". The topic is new, so i is
// also the record's offset.
func value(p int32, i int) string { return fmt.Sprintf("%d/%d", p, i) }

// parseValue is value's inverse.
func parseValue(v string) (p int32, i int) {
	ps, is, _ := strings.Cut(v, "/")
	pn, _ := strconv.Atoi(ps)
	i, _ = strconv.Atoi(is)
	return int32(pn), i
}

// produce writes records from..to-1 of each of partitions, valued by value.
func (s *stubTopic) produce(t *testing.T, partitions int32, from, to int) {
	t.Helper()
	var recs []*kgo.Record
	for p := range partitions {
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Topic: s.topic, Partition: p, Value: []byte(value(p, i))})
		}
	}
	s.k.Produce(t, recs...)
}

// waitCommitted waits, after each commit m counts, until the group
// committed want.
func (s *stubTopic) waitCommitted(t *testing.T, m *counter, want map[int32]int64) {
	t.Helper()
	ctx := waitCtx(t)
	// Once a commit was answered the group exists, and its offsets can be
	// read.
	for m.committed.Load()+m.refused.Load() == 0 || !maps.Equal(s.k.Committed(t, s.group, s.topic), want) {
		select {
		case <-m.commits:
		case <-ctx.Done():
			t.Fatalf("committed %v, want %v", s.k.Committed(t, s.group, s.topic), want)
		}
	}
}

// runStub runs a relay with the stubs over records 0..n-1 of a new topic
// until the group committed the end offsets, and returns its metrics.
func runStub(t *testing.T, n int, sink relay.Sink) *counter {
	t.Helper()
	s := newStubTopic(t, 2)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: s.topic, Partition: int32(i % 2), Value: []byte{byte('a' + i)}})
	}
	s.k.Produce(t, recs...)
	m := newCounter()
	r := newStubRelay(t, s.k, s.topic, s.group, stub{sink: sink, metrics: m})
	stop := runRelay(t, r)
	s.waitCommitted(t, m, s.k.EndOffsets(t, s.topic))
	stop()
	if n := r.Buffered(); n != 0 {
		t.Errorf("Buffered() = %d after Run returned, want 0", n)
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

// flakyDecoder answers a *codec.TransientError (the registry is down) the
// first failures times it decodes value, then decodes it.
type flakyDecoder struct {
	value    string
	failures int
	attempts atomic.Int32
}

func (d *flakyDecoder) DecodeIntoShared(ctx context.Context, v []byte, ev *codec.Event) error {
	if string(v) == d.value && int(d.attempts.Add(1)) <= d.failures {
		return &codec.TransientError{Err: errors.New("schema registry: 503")}
	}
	return stubDecoder{}.DecodeIntoShared(ctx, v, ev)
}

// TestTransientDecodeIsRetried: a record whose decode fails twice with a
// *codec.TransientError is decoded on the third attempt and delivered;
// nothing is dead-lettered and the group commits the end.
// Mutation caught: process() treating a TransientError as permanent
// (`!errors.As(err, &te)` made always true): the record goes to the DLQ
// after one attempt.
func TestTransientDecodeIsRetried(t *testing.T) {
	s := newStubTopic(t, 2)
	s.produce(t, 2, 0, 3)
	dec := &flakyDecoder{value: value(0, 1), failures: 2}
	sink := &scriptedSink{}
	m := newCounter()
	stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{decoder: dec, sink: sink, metrics: m}))
	s.waitCommitted(t, m, map[int32]int64{0: 3, 1: 3})
	stop()
	if got := dec.attempts.Load(); got != 3 {
		t.Errorf("%s decoded %d times, want 3 (two transient failures, then success)", dec.value, got)
	}
	if n := sink.count(dec.value); n != 1 {
		t.Errorf("%s delivered %d times, want once", dec.value, n)
	}
	if n := m.sum(pipeline.Rejected.String()); n != 0 {
		t.Errorf("%d records dead-lettered, want none", n)
	}
}

// TestStageErrorGoesToDLQ: a stage failing (not a drop) sends the record to
// the DLQ with the stage and reason headers and its origin; its partition
// commits past it and the other records are delivered.
// Mutation caught: process() settling a stage error as filtered instead of
// dead-lettering it: the DLQ stays empty.
func TestStageErrorGoesToDLQ(t *testing.T) {
	s := newStubTopic(t, 2)
	s.produce(t, 2, 0, 3)
	bad := value(1, 1)
	stages := stagesFunc(func(ctx context.Context, h *pipeline.Hit) error {
		if h.Event.EventID == bad {
			return errors.New("enrich: lookup failed")
		}
		return stubStages(ctx, h)
	})
	sink := &scriptedSink{}
	m := newCounter()
	stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{stages: stages, sink: sink, metrics: m}))
	s.waitCommitted(t, m, map[int32]int64{0: 3, 1: 3})
	stop()
	if got := m.get(pipeline.Rejected.String(), "stage_error"); got != 1 {
		t.Fatalf("rejected stage_error = %d, want 1", got)
	}
	if n := sink.count(bad); n != 0 {
		t.Errorf("%s delivered %d times, want dead-lettered", bad, n)
	}
	dead := s.k.ReadAll(t, s.topic+".dlq", 1)
	h := headers(dead[0])
	if string(dead[0].Value) != bad || h[dlq.HeaderStage] != "stages" || h[dlq.HeaderReason] != "stage_error" ||
		h[dlq.HeaderPartition] != "1" || h[dlq.HeaderOffset] != "1" || !strings.Contains(h[dlq.HeaderError], "lookup failed") {
		t.Fatalf("DLQ record %q headers %v, want %s from stages/stage_error", dead[0].Value, h, bad)
	}
}

// poisonDecoder fails every value starting with "poison" permanently.
type poisonDecoder struct{}

func (poisonDecoder) DecodeIntoShared(ctx context.Context, v []byte, ev *codec.Event) error {
	if strings.HasPrefix(string(v), "poison") {
		return errors.New("corrupt value")
	}
	return stubDecoder{}.DecodeIntoShared(ctx, v, ev)
}

// TestDLQWriteFailureStallsPartition: while the dead-letter topic refuses
// writes, an undecodable record holds its partition's commit below it (the
// records after it are delivered, the other partition commits its end),
// the failed writes are counted; once writes succeed it is dead-lettered
// and the partition commits its end. Nothing is skipped.
// Mutation caught: a failed DLQ write reported as written (dlq.write
// returning nil after a failed attempt): partition 0 commits past the
// poison while the DLQ refuses it, and the DLQ stays empty.
func TestDLQWriteFailureStallsPartition(t *testing.T) {
	s := newStubTopic(t, 2)
	s.k.RequireFake(t)
	// Partition 0: 0/0 0/1 poison 0/3 0/4; partition 1: 1/0..1/4.
	var recs []*kgo.Record
	for p := range int32(2) {
		for i := range 5 {
			v := value(p, i)
			if p == 0 && i == 2 {
				v = "poison"
			}
			recs = append(recs, &kgo.Record{Topic: s.topic, Partition: p, Value: []byte(v)})
		}
	}
	s.k.Produce(t, recs...)
	const poison = 2 // its offset
	// The broker refuses every write to the DLQ topic until Remove.
	refuse := s.k.Fake().Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: s.topic + ".dlq", Err: kerr.TopicAuthorizationFailed, Count: -1})
	var refusing atomic.Bool
	refusing.Store(true)
	var mu sync.Mutex
	var passed []int64
	sink := &scriptedSink{}
	m := newCounter()
	r := newStubRelay(t, s.k, s.topic, s.group, stub{decoder: poisonDecoder{}, sink: sink, metrics: m})
	relay.OnCommit(r, func(offs map[string]map[int32]kgo.EpochOffset) {
		if o, ok := offs[s.topic][0]; ok && o.Offset > poison && refusing.Load() {
			mu.Lock()
			passed = append(passed, o.Offset)
			mu.Unlock()
		}
	})
	stop := runRelay(t, r)
	// Every other record settles and commits, the poison's partition stops
	// at it, and its write is refused three times; a commit past it fails
	// the test at once.
	ctx := waitCtx(t)
	retried := make(chan error, 1)
	go func() { retried <- refuse.Wait(ctx, 3) }()
	for done := false; ; {
		mu.Lock()
		n := len(passed)
		mu.Unlock()
		if n > 0 {
			t.Fatalf("partition 0 committed past the poison (offset %d) while the DLQ refused it", poison)
		}
		if done && m.committed.Load() > 0 && maps.Equal(s.k.Committed(t, s.group, s.topic), map[int32]int64{0: poison, 1: 5}) {
			break
		}
		select {
		case <-m.commits:
		case err := <-retried:
			if err != nil {
				t.Fatalf("the DLQ write was not retried 3 times: %v", err)
			}
			done = true
		case <-ctx.Done():
			t.Fatalf("committed %v, want {0:%d 1:5}", s.k.Committed(t, s.group, s.topic), poison)
		}
	}
	for _, v := range []string{value(0, 3), value(0, 4)} {
		if sink.count(v) != 1 {
			t.Errorf("%s delivered %d times while the poison before it waited, want once", v, sink.count(v))
		}
	}
	if got := s.k.Committed(t, s.group, s.topic)[0]; got != poison {
		t.Fatalf("partition 0 committed %d while its DLQ write failed, want %d", got, poison)
	}
	refusing.Store(false)
	refuse.Remove()
	s.waitCommitted(t, m, map[int32]int64{0: 5, 1: 5})
	stop()
	if len(passed) > 0 {
		t.Errorf("partition 0 committed at %v past the poison (offset %d) while the DLQ refused it", passed, poison)
	}
	if got := m.get("dlq_write_error", "error"); got < 3 {
		t.Errorf("dlq write errors counted %d, want the 3 refusals at least", got)
	}
	dead := s.k.ReadAll(t, s.topic+".dlq", 1)
	if h := headers(dead[0]); string(dead[0].Value) != "poison" || h[dlq.HeaderStage] != "decode" || h[dlq.HeaderOffset] != strconv.Itoa(poison) {
		t.Fatalf("DLQ record %q headers %v, want the poison from decode", dead[0].Value, h)
	}
}
