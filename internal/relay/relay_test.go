package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/schemas"
	"github.com/atrelay/atrelay/sinks/dlq"
)

const schemaID = 1

// The three integrations of the tests and what each does differently.
const configTemplate = `
kafka: {brokers: [%s], topic: %s, group: %s}
codec: {framing: auto, schema_registry: {url: %q}}
delivery:
  max_events: 200
  linger: 20ms
  concurrency: 8
  request_timeout: 5s
  backoff: {min: 5ms, max: 100ms}
  max_buffered_events: %d
  commit_interval: 50ms
  shutdown_timeout: %s
integrations:
  - name: fitness
    app_id: com.example.fitness
    site_id: 100001
    collect_domain: %q
    collect_path: subscription
    events: [SUBSCRIPTION_STARTED, SUBSCRIPTION_RENEWED, SUBSCRIPTION_EXPIRED, SUBSCRIPTION_REACTIVATED, SUBSCRIPTION_REFUNDED_REVOKED, RENEWAL_DISABLED, RENEWAL_ENABLED, TRIAL_STARTED, TRIAL_CONVERTED, TRIAL_NOT_CONVERTED]
    event_names: {SUBSCRIPTION_STARTED: subscription.started}
    properties: {rename: {plan: plan_id}, drop: [ab_test_variant], static: {app_name: Fitness}}
  - name: news
    app_id: com.example.news
    site_id: 100002
    collect_domain: %q
    environments: [PRODUCTION, SANDBOX]
    events: [SUBSCRIPTION_STARTED, SUBSCRIPTION_RENEWED, TRIAL_STARTED, TRIAL_CONVERTED, TRANSACTION_PROCESSED, SUBSCRIPTION_TERMINATED]
    idclient_from: ["attribute:at_internet_id_client", anonymous_user_id]
  - name: games
    app_id: com.example.games
    enabled: false
    site_id: 100003
    collect_domain: %q
    events: [SUBSCRIPTION_STARTED]
`

// expected is what must become of one event: delivered under a Piano name,
// or filtered for a reason. It is computed here, independently of the
// pipeline, from the configuration above.
type expected struct {
	site   int64
	name   string
	reason string // filter reason; "" when delivered
}

func expect(ev *codec.Event) expected {
	switch ev.AppID {
	case fixture.AppFitness:
		switch {
		case ev.Environment != "PRODUCTION":
			return expected{reason: "environment_not_enabled"}
		case !contains(fixture.TableEvents, ev.EventName):
			return expected{reason: "event_not_enabled"}
		case ev.UserAttributes["at_internet_id_client"] == "":
			return expected{reason: "no_idclient"}
		case ev.EventName == "SUBSCRIPTION_STARTED":
			return expected{site: 100001, name: "subscription.started"}
		}
		return expected{site: 100001, name: strings.ToLower(ev.EventName)}
	case fixture.AppNews:
		if !contains([]string{"SUBSCRIPTION_STARTED", "SUBSCRIPTION_RENEWED", "TRIAL_STARTED", "TRIAL_CONVERTED", "TRANSACTION_PROCESSED", "SUBSCRIPTION_TERMINATED"}, ev.EventName) {
			return expected{reason: "event_not_enabled"}
		}
		return expected{site: 100002, name: strings.ToLower(ev.EventName)}
	case fixture.AppGames:
		return expected{reason: "integration_disabled"}
	}
	return expected{reason: "no_integration"}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// record is one produced record and what must become of it.
type record struct {
	partition int32
	offset    int64
	eventID   string // "" for a poison pill
	want      expected
}

// env is one test's world: a broker, a registry, a collector, a topic.
type env struct {
	t         *testing.T
	kafka     *testkafka.Cluster
	topic     string
	group     string
	reg       *srfake.Registry
	collector *sandbox.Collector
	collect   *httptest.Server
	parts     int32

	mu      sync.Mutex
	records []record
	byEvent map[string]record

	metrics *counter
	// onCommit, when set (watchCommits on a real broker), sees every
	// commit of every service started.
	onCommit func(map[string]map[int32]kgo.EpochOffset)
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	e := &env{t: t, kafka: testkafka.New(t), parts: partitions, byEvent: map[string]record{}, metrics: newCounter()}
	e.topic = e.kafka.Name(t, "events")
	e.group = e.kafka.Name(t, "group")
	e.kafka.CreateTopic(t, e.topic, partitions)
	e.kafka.CreateTopic(t, e.topic+".dlq", 1)
	e.reg = srfake.New()
	t.Cleanup(e.reg.Close)
	e.reg.SeedSchema(e.topic+"-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	e.collector = sandbox.New()
	e.collect = httptest.NewServer(e.collector)
	t.Cleanup(e.collect.Close)
	return e
}

func (e *env) config(maxBuffered int, shutdown time.Duration) *config.Config {
	e.t.Helper()
	brokers := `"` + strings.Join(e.kafka.Brokers(), `","`) + `"`
	text := fmt.Sprintf(configTemplate, brokers, e.topic, e.group, e.reg.URL(), maxBuffered, shutdown,
		e.collect.URL, e.collect.URL, e.collect.URL)
	cfg, err := config.Parse([]byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		e.t.Fatal(err)
	}
	return cfg
}

// produce writes events (partitioned by visitor, so each visitor's events
// keep their order) and poison pills, and remembers every record's offset.
func (e *env) produce(events []codec.Event, poison int) {
	e.t.Helper()
	enc := fixture.MustEncoder("")
	var recs []*kgo.Record
	var wants []record
	for i := range events {
		ev := &events[i]
		h := fnv.New32a()
		h.Write([]byte(ev.AnonymousUserID))
		p := int32(h.Sum32() % uint32(e.parts))
		recs = append(recs, &kgo.Record{Topic: e.topic, Partition: p, Key: []byte(ev.AnonymousUserID), Value: enc.Confluent(schemaID, ev),
			Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}})
		wants = append(wants, record{partition: p, eventID: ev.EventID, want: expect(ev)})
		if poison > 0 && i%(len(events)/poison+1) == 0 {
			kind := []string{fixture.CorruptTruncated, fixture.CorruptGarbage, fixture.CorruptUnknownSchema}[i%3]
			recs = append(recs, &kgo.Record{Topic: e.topic, Partition: p, Key: []byte("poison"), Value: enc.Corrupt(kind, ev)})
			wants = append(wants, record{partition: p, want: expected{reason: "dlq"}})
		}
	}
	e.kafka.Produce(e.t, recs...)
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, r := range recs {
		wants[i].offset = r.Offset
		e.records = append(e.records, wants[i])
		if wants[i].eventID != "" {
			e.byEvent[wants[i].eventID] = wants[i]
		}
	}
}

// delivered returns how many times each event id reached the collector.
func (e *env) delivered() map[string]int {
	out := map[string]int{}
	for _, h := range e.collector.Hits() {
		out[h.Data["event_id"].(string)]++
	}
	return out
}

func (e *env) wantDelivered() int {
	n := 0
	for _, r := range e.records {
		if r.eventID != "" && r.want.reason == "" {
			n++
		}
	}
	return n
}

// checkCommit is the product's promise: no committed offset passes a record
// whose hit the collector has not acknowledged. Poison pills and filtered
// events are settled without the collector, so only hits are checked here.
func (e *env) checkCommit(offs map[int32]int64) error {
	got := e.delivered()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.records {
		if r.eventID == "" || r.want.reason != "" {
			continue
		}
		if at, ok := offs[r.partition]; ok && r.offset < at && got[r.eventID] == 0 {
			return fmt.Errorf("partition %d committed at %d past offset %d (event %s) that the collector never acknowledged", r.partition, at, r.offset, r.eventID)
		}
	}
	return nil
}

// watchCommits checks every commit the service sends: through kfake's
// request control when the broker is kfake, through the relay's OnCommit
// hook otherwise. Every commit must stop at or before the first record
// whose hit the collector has not acknowledged (checkCommit); on kfake it
// must also come from the partition's owner in its generation, and no
// partition's commit may move backwards (ownership). Violations are
// collected and reported by the returned func, or when the test ends.
func (e *env) watchCommits() (opts app.Options, report func()) {
	var mu sync.Mutex
	var violations []error
	var commits int
	check := func(offs map[int32]int64) {
		if len(offs) == 0 {
			return
		}
		if err := e.checkCommit(offs); err != nil {
			mu.Lock()
			violations = append(violations, err)
			mu.Unlock()
		}
		mu.Lock()
		commits++
		mu.Unlock()
	}
	if fake := e.kafka.Fake(); fake != nil {
		watchOwnership(e.t, fake, e.group, e.topic)
		fake.ControlKey(kmsg.OffsetCommit.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			fake.KeepControl()
			offs := map[int32]int64{}
			// OffsetCommit v10 names topics by id; the group commits
			// only e.topic, so every partition here is one of it.
			for _, t := range req.(*kmsg.OffsetCommitRequest).Topics {
				for _, p := range t.Partitions {
					offs[p.Partition] = p.Offset
				}
			}
			check(offs)
			return nil, nil, false
		})
	} else {
		e.onCommit = func(m map[string]map[int32]kgo.EpochOffset) {
			offs := map[int32]int64{}
			for p, o := range m[e.topic] {
				offs[p] = o.Offset
			}
			check(offs)
		}
	}
	var once sync.Once
	report = func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			if commits == 0 {
				e.t.Error("no commit was observed")
			}
			for _, v := range violations {
				e.t.Error(v)
			}
		})
	}
	e.t.Cleanup(report)
	return opts, report
}

// service is one running relay.
type service struct {
	svc    *app.Service
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(cfg *config.Config, opts app.Options) *service {
	e.t.Helper()
	if opts.Metrics == nil {
		opts.Metrics = e.metrics
	}
	svc, err := app.Build(cfg, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.onCommit != nil {
		relay.OnCommit(svc.Relay, e.onCommit)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &service{svc: svc, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- svc.Run(ctx) }()
	e.t.Cleanup(func() { s.stop(e.t) })
	return s
}

// stop is SIGTERM: a graceful shutdown.
func (s *service) stop(t testing.TB) {
	t.Helper()
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("Run() = %v", err)
		}
		s.done <- nil // later stops return at once
	case <-time.After(60 * time.Second):
		t.Fatal("service did not stop within 60s")
	}
}

// crash stops the service as a crash would: no final commit.
func (s *service) crash(t testing.TB) {
	relay.Kill(s.svc.Relay)
	s.stop(t)
}

func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitCommitted waits until the group committed every partition up to its
// end offset, checking after each commit the service sends.
func (e *env) waitCommitted(ctx context.Context) {
	e.t.Helper()
	ends := e.kafka.EndOffsets(e.t, e.topic)
	for {
		got := e.kafka.Committed(e.t, e.group, e.topic)
		if maps.Equal(got, ends) {
			return
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("committed %v, want end offsets %v", got, ends)
		case <-e.metrics.commits:
		}
	}
}

// finish waits until every expected hit arrived and the group committed the
// end offsets, reports any commit that passed an unacknowledged record, and
// fails for every event lost. It returns how often each event arrived.
func (e *env) finish(ctx context.Context, report func()) map[string]int {
	e.t.Helper()
	if err := e.collector.WaitHits(ctx, e.wantDelivered()); err != nil {
		e.t.Fatal(err)
	}
	e.waitCommitted(ctx)
	report()
	got := e.delivered()
	for id, r := range e.byEvent {
		if r.want.reason == "" && got[id] == 0 {
			e.t.Errorf("event %s lost", id)
		}
	}
	return got
}

// TestDeliversEverything is acceptance (a) and (b): 10,000 events over 6
// partitions and 3 integrations plus poison pills; the collector receives
// exactly the expected hits, drops are counted by reason, pills land in the
// DLQ with their headers, and the group commits the end offsets.
func TestDeliversEverything(t *testing.T) {
	e := newEnv(t, 6)
	events := fixture.Generate(fixture.Options{Seed: 1, Events: 10000, EventsPerVisitor: 3})
	const pills = 12
	e.produce(events, pills)
	opts, report := e.watchCommits()
	e.start(e.config(2000, 10*time.Second), opts)

	ctx := waitCtx(t)
	want := e.wantDelivered()
	if err := e.collector.WaitHits(ctx, want); err != nil {
		t.Fatal(err)
	}
	e.waitCommitted(ctx)
	report()

	got := e.delivered()
	reasons := map[string]int64{}
	for _, r := range e.records {
		switch {
		case r.eventID == "":
			reasons["dlq"]++
		case r.want.reason != "":
			reasons[r.want.reason]++
			if got[r.eventID] != 0 {
				t.Errorf("event %s was delivered, want filtered (%s)", r.eventID, r.want.reason)
			}
		case got[r.eventID] != 1:
			t.Errorf("event %s delivered %d times, want once", r.eventID, got[r.eventID])
		}
	}
	for _, h := range e.collector.Hits() {
		r := e.byEvent[h.Data["event_id"].(string)]
		if h.Site != r.want.site || h.Name != r.want.name {
			t.Fatalf("hit %v went to site %d as %q, want %d as %q", h.Data["event_id"], h.Site, h.Name, r.want.site, r.want.name)
		}
		if h.Site == 100001 {
			if _, ok := h.Data["plan"]; ok || h.Data["plan_id"] == nil || h.Data["app_name"] != "Fitness" || h.Data["ab_test_variant"] != nil {
				t.Fatalf("fitness hit properties not renamed/dropped/static: %v", h.Data)
			}
		}
	}
	if n := len(e.collector.Rejections()); n != 0 {
		t.Fatalf("collector rejected %d requests: %v", n, e.collector.Rejections()[0])
	}
	for reason, n := range reasons {
		outcome := pipeline.Filtered.String()
		if reason == "dlq" {
			outcome = pipeline.Rejected.String()
			n = int64(pills)
			if got := e.metrics.sum(pipeline.Rejected.String()); got != n {
				t.Errorf("dlq settled %d, want %d", got, n)
			}
			continue
		}
		if got := e.metrics.get(outcome, reason); got != n {
			t.Errorf("filtered %s = %d, want %d", reason, got, n)
		}
	}
	if got := e.metrics.get(pipeline.Delivered.String(), ""); got != int64(want) {
		t.Errorf("delivered = %d, want %d", got, want)
	}

	// (b) every poison pill is in the DLQ with its origin.
	dead := e.kafka.ReadAll(t, e.topic+".dlq", pills)
	if len(dead) != pills {
		t.Fatalf("DLQ has %d records, want %d", len(dead), pills)
	}
	for _, d := range dead {
		h := headers(d)
		if string(d.Key) != "poison" || h[dlq.HeaderTopic] != e.topic || h[dlq.HeaderStage] != "decode" || h[dlq.HeaderReason] == "" || h[dlq.HeaderError] == "" {
			t.Fatalf("DLQ record lacks its origin: key %q headers %v", d.Key, h)
		}
		if _, err := time.Parse(time.RFC3339Nano, h[dlq.HeaderTime]); err != nil {
			t.Fatalf("DLQ time header %q: %v", h[dlq.HeaderTime], err)
		}
		p, _ := strconv.Atoi(h[dlq.HeaderPartition])
		off, _ := strconv.ParseInt(h[dlq.HeaderOffset], 10, 64)
		if !e.isPoison(int32(p), off) {
			t.Fatalf("DLQ names partition %d offset %d, which is not a poison pill", p, off)
		}
	}
}

func (e *env) isPoison(p int32, off int64) bool {
	for _, r := range e.records {
		if r.partition == p && r.offset == off {
			return r.eventID == ""
		}
	}
	return false
}

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// TestCollectorOutage is acceptance (c): the collector answers 503 for a
// while; every event arrives once it recovers and nothing is committed past
// an undelivered record meanwhile.
func TestCollectorOutage(t *testing.T) {
	e := newEnv(t, 3)
	// Filtered events first, so that the service has something to commit
	// during the outage: up to, and never past, the first undelivered hit.
	e.produce(fixture.Generate(fixture.Options{Seed: 30, Events: 90, Apps: []string{fixture.UnknownApp}}), 0)
	e.produce(fixture.Generate(fixture.Options{Seed: 3, Events: 1500}), 0)
	e.collector.FailNext(1_000_000, 503, "")
	opts, report := e.watchCommits()
	e.start(e.config(500, 10*time.Second), opts)
	ctx := waitCtx(t)
	// The outage lasts until the service has committed: that commit must
	// stop before the first undelivered record.
	select {
	case <-e.metrics.commits:
	case <-ctx.Done():
		t.Fatal("no commit during the outage")
	}
	if e.collector.Stats().Hits != 0 {
		t.Fatal("hits arrived during the outage")
	}
	e.collector.ClearFailures()
	if err := e.collector.WaitHits(ctx, e.wantDelivered()); err != nil {
		t.Fatal(err)
	}
	e.waitCommitted(ctx)
	report()
	for id, n := range e.delivered() {
		if n != 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
}

// TestCrashRedelivers is acceptance (d): a consumer stopped abruptly (no
// final commit) and a new one started: every event arrives at least once,
// and every duplicate comes from the window the crash left uncommitted.
// The relay is killed from inside the collector, after it recorded a
// request's hits and before it answers: those events reached the
// collector but the relay never learns it, so they are not committed and
// the new consumer sends them again.
// Mutation caught: kill() doing nothing (the stop is then graceful: the
// request's events are committed and arrive once).
func TestCrashRedelivers(t *testing.T) {
	e := newEnv(t, 4)
	e.produce(fixture.Generate(fixture.Options{Seed: 4, Events: 4000, EventsPerVisitor: 5}), 0)
	const maxBuffered = 300
	cfg := e.config(maxBuffered, 5*time.Second)
	opts, report := e.watchCommits()
	ctx := waitCtx(t)
	first := e.start(cfg, opts)
	// The crash: once a third of the hits arrived, inside the collector,
	// after it recorded a request and before it answers it.
	third := e.wantDelivered() / 3
	var once sync.Once
	crashed := make(chan []string, 1)
	e.collector.OnRequest(func(r sandbox.Request) {
		if r.Status != http.StatusNoContent || e.collector.Stats().Hits < third {
			return
		}
		once.Do(func() {
			relay.Kill(first.svc.Relay)
			crashed <- eventIDs(t, r.Body)
		})
	})
	var inflight []string
	select {
	case inflight = <-crashed:
	case <-ctx.Done():
		t.Fatal("the collector never received a third of the hits")
	}
	first.crash(t)
	committed := e.kafka.Committed(t, e.group, e.topic) // nothing commits after a crash

	e.start(cfg, opts)
	got := e.finish(ctx, report)
	for id, n := range got {
		if r := e.byEvent[id]; n > 1 && r.offset < committed[r.partition] {
			t.Errorf("event %s (partition %d offset %d) delivered twice although committed at %d", id, r.partition, r.offset, committed[r.partition])
		}
	}
	if len(inflight) == 0 {
		t.Fatal("the request answered at the crash carried no event")
	}
	for _, id := range inflight {
		if r := e.byEvent[id]; r.offset < committed[r.partition] || got[id] < 2 {
			t.Errorf("event %s (partition %d offset %d) reached the collector as the relay crashed: committed at %d and delivered %d time(s), want uncommitted and delivered again",
				id, r.partition, r.offset, committed[r.partition], got[id])
		}
	}
	t.Logf("duplicates after the crash: %d (max_buffered_events %d)", duplicates(got), maxBuffered)
}

// eventIDs returns the event ids of a collect request's body.
func eventIDs(t testing.TB, body string) []string {
	t.Helper()
	var req struct {
		Events []struct {
			Data map[string]any `json:"data"`
		} `json:"events"`
	}
	if err := json.Unmarshal([]byte(body), &req); err != nil {
		t.Error(err)
	}
	var ids []string
	for _, ev := range req.Events {
		if id, ok := ev.Data["event_id"].(string); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// duplicates returns how many deliveries beyond the first the events got.
func duplicates(got map[string]int) int {
	n := 0
	for _, times := range got {
		n += max(times-1, 0)
	}
	return n
}

// TestRebalanceWhileSlow is acceptance (e): a second consumer joins and
// leaves while the collector is slow; nothing is lost and no commit ever
// passes a record the collector has not acknowledged. The collector holds
// every request from before the second consumer joins until it owns
// partitions, so the first one's revoke drain meets records it cannot
// settle: they are released as abandoned{revoked} and their new owner
// sends them.
// Mutation caught: revoked() ending the assignments with ErrLost instead
// of ErrRevoked (the released records are counted as lost).
func TestRebalanceWhileSlow(t *testing.T) {
	e := newEnv(t, 6)
	e.produce(fixture.Generate(fixture.Options{Seed: 5, Events: 3000, EventsPerVisitor: 2}), 0)
	cfg := e.config(400, 2*time.Second)
	opts, report := e.watchCommits()
	ctx := waitCtx(t)
	e.start(cfg, opts)
	want := e.wantDelivered()
	if err := e.collector.WaitHits(ctx, want/4); err != nil {
		t.Fatal(err)
	}
	release := e.collector.Hold()
	joined := make(chan struct{})
	var once sync.Once
	second := opts
	second.OnReady = func(ready bool) {
		if ready {
			once.Do(func() { close(joined) })
		}
	}
	b := e.start(cfg, second)
	select {
	case <-joined:
	case <-ctx.Done():
		t.Fatal("second consumer never got partitions")
	}
	release()
	if err := e.collector.WaitHits(ctx, want/2); err != nil {
		t.Fatal(err)
	}
	b.stop(t) // leaves: its partitions go back to the first consumer
	e.finish(ctx, report)
	if e.metrics.get("abandoned", "revoked") == 0 {
		t.Fatal("no record was released at the revoke: the rebalance did not happen while the collector was slow, the test proves nothing")
	}
}

// TestGracefulRestart is acceptance (f): SIGTERM mid-stream, then restart:
// no event lost and none delivered twice.
func TestGracefulRestart(t *testing.T) {
	e := newEnv(t, 4)
	e.produce(fixture.Generate(fixture.Options{Seed: 6, Events: 4000, EventsPerVisitor: 4}), 0)
	cfg := e.config(500, 10*time.Second)
	opts, report := e.watchCommits()
	ctx := waitCtx(t)
	first := e.start(cfg, opts)
	want := e.wantDelivered()
	if err := e.collector.WaitHits(ctx, want/3); err != nil {
		t.Fatal(err)
	}
	first.stop(t)
	e.start(cfg, opts)
	got := e.finish(ctx, report)
	for id, r := range e.byEvent {
		if r.want.reason == "" && got[id] > 1 {
			t.Errorf("event %s delivered %d times, want exactly once", id, got[id])
		}
	}
}

// counter is relay.Metrics counting in memory, and signalling each commit.
type counter struct {
	mu      sync.Mutex
	settled map[string]int64
	commits chan struct{}
	// events is signalled each time a record is settled or abandoned.
	events chan struct{}
	// committed and refused count the commits reported ok and not ok (a
	// partition refused, or the request failed).
	committed, refused atomic.Int64
}

func newCounter() *counter {
	return &counter{settled: map[string]int64{}, commits: make(chan struct{}, 1), events: make(chan struct{}, 1)}
}

func (c *counter) Consumed(context.Context, string, int32) {}
func (c *counter) DLQWriteError(_ context.Context, reason string) {
	c.mu.Lock()
	c.settled["dlq_write_error/"+reason]++
	c.mu.Unlock()
}
func (c *counter) Abandoned(_ context.Context, reason string, n int64) {
	c.mu.Lock()
	c.settled["abandoned/"+reason] += n
	c.mu.Unlock()
	c.event()
}
func (c *counter) Adjusted(_ context.Context, reason string, n int64) {
	c.mu.Lock()
	c.settled["adjusted/"+reason] += n
	c.mu.Unlock()
}
func (c *counter) DeliveryLatency(context.Context, string, time.Duration) {}
func (c *counter) Settled(_ context.Context, outcome, reason string, n int64) {
	c.mu.Lock()
	c.settled[outcome+"/"+reason] += n
	c.mu.Unlock()
	c.event()
}

func (c *counter) event() {
	select {
	case c.events <- struct{}{}:
	default:
	}
}
func (c *counter) Commit(_ context.Context, ok bool) {
	if ok {
		c.committed.Add(1)
	} else {
		c.refused.Add(1)
	}
	select {
	case c.commits <- struct{}{}:
	default:
	}
}

func (c *counter) get(outcome, reason string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.settled[outcome+"/"+reason]
}

func (c *counter) sum(outcome string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for k, v := range c.settled {
		if strings.HasPrefix(k, outcome+"/") {
			n += v
		}
	}
	return n
}
