package relay_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/internal/testtls"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// abandoned returns how many records the service released unsettled.
func (c *counter) abandoned() int64 { return c.sum("abandoned") }

// failingUntil returns a SinkHooks counting the client's failed attempts of
// one reason, and a func that reports whether n of them happened: the
// collector misbehaves until then, so every test meets the failure it is
// about, however the requests interleave.
func failingUntil(reason string, n int64, then func(*atinternet.Config)) (func(*atinternet.Config), func() bool) {
	var seen atomic.Int64
	hook := func(c *atinternet.Config) {
		c.OnRetry = func(_ *pipeline.Site, r string) {
			if r == reason {
				seen.Add(1)
			}
		}
		if then != nil {
			then(c)
		}
	}
	return hook, func() bool { return seen.Load() >= n }
}

// TestRedirectLoopThenRecovers is issue 9 (1): a collector that redirects
// to itself (net/http gives up after 10 redirects, and retryablehttp's
// default policy does not retry that) until the client gave up 5 times,
// then answers 204: everything is delivered, the group commits the end
// offsets, and no record was released unsettled on the way.
// Mutation caught: the pre-fix pair — checkRetry deferring to
// retryablehttp.DefaultRetryPolicy for transport errors and send()
// abandoning a retry-later request — leaves records abandoned and
// partitions uncommitted. Each half alone is caught one layer down:
// sinks/atinternet TestTransportFailuresAreRetried, and
// TestRetryLaterIsSentAgain here.
func TestRedirectLoopThenRecovers(t *testing.T) {
	e := newEnv(t, 3)
	e.produce(fixture.Generate(fixture.Options{Seed: 91, Events: 600}), 0)
	hook, recovered := failingUntil("redirects", 5, nil)
	e.collect.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !recovered() {
			http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
			return
		}
		e.collector.ServeHTTP(w, r)
	})
	opts, report := e.watchCommits()
	opts.SinkHooks = hook
	e.start(e.config(500, 10*time.Second), opts)
	e.finish(waitCtx(t), report)
	if n := e.metrics.abandoned(); n != 0 {
		t.Fatalf("%d records released unsettled while the service ran", n)
	}
}

// TestUntrustedCertificateThenTrusted is issue 9 (1) again: the collector
// presents a certificate that fails verification until the client failed
// 5 times on it, then (same address) one that verifies: everything is
// delivered, committed == end, nothing released unsettled.
// Mutation caught: the same pre-fix pair as TestRedirectLoopThenRecovers.
func TestUntrustedCertificateThenTrusted(t *testing.T) {
	e := newEnv(t, 3)
	e.produce(fixture.Generate(fixture.Options{Seed: 92, Events: 600}), 0)
	untrusted := testtls.Untrusted(t)
	srv := httptest.NewUnstartedServer(e.collector)
	srv.StartTLS() // its own certificate is the one the client trusts
	t.Cleanup(srv.Close)
	hook, recovered := failingUntil("tls", 5, func(c *atinternet.Config) { c.Transport = srv.Client().Transport })
	good := srv.TLS.Certificates[0]
	srv.TLS.Certificates = nil
	srv.TLS.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if !recovered() {
			return untrusted, nil
		}
		return &good, nil
	}
	e.collect = srv
	opts, report := e.watchCommits()
	opts.SinkHooks = hook
	e.start(e.config(500, 10*time.Second), opts)
	e.finish(waitCtx(t), report)
	if n := e.metrics.abandoned(); n != 0 {
		t.Fatalf("%d records released unsettled while the service ran", n)
	}
}

// memberLog watches one member's log for the end of its assignments.
type memberLog struct {
	mu      sync.Mutex
	ended   map[int32]time.Time // partition -> when its revoke/loss returned
	signal  chan struct{}
	message string
	again   time.Time // first assignment after an end
}

func (m *memberLog) Enabled(context.Context, slog.Level) bool { return true }
func (m *memberLog) WithAttrs([]slog.Attr) slog.Handler       { return m }
func (m *memberLog) WithGroup(string) slog.Handler            { return m }
func (m *memberLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "partitions assigned" {
		m.mu.Lock()
		if len(m.ended) > 0 && m.again.IsZero() {
			m.again = time.Now()
		}
		m.mu.Unlock()
		return nil
	}
	if !strings.HasPrefix(r.Message, m.message) {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "partitions" {
			return true
		}
		parts, _ := a.Value.Any().(map[string][]int32)
		m.mu.Lock()
		for _, ps := range parts {
			for _, p := range ps {
				m.ended[p] = time.Now()
			}
		}
		n := len(m.ended)
		m.mu.Unlock()
		if n > 0 {
			select {
			case m.signal <- struct{}{}:
			default:
			}
		}
		return true
	})
	return nil
}

// watchedMember returns opts for the member under watch: its requests say
// atrelay/member-a, and its log tells when message (its revoke or loss)
// returned.
func watchedMember(opts app.Options, message string) (*memberLog, app.Options) {
	m := &memberLog{ended: map[int32]time.Time{}, signal: make(chan struct{}, 1), message: message}
	opts.Logger = slog.New(m)
	opts.SinkHooks = func(c *atinternet.Config) { c.UserAgent = "atrelay/member-a" }
	return m, opts
}

// staleHits returns the events the collector recorded from member ua, of
// partitions whose assignment had ended for it at that time.
func (e *env) staleHits(m *memberLog, ua string, reqs []stamped) []string {
	return e.staleBetween(m, ua, reqs, false)
}

// staleHitsUntilReassigned is staleHits for a member that gets the
// partitions back: only what it sent between the end and the next
// assignment is stale.
func (e *env) staleHitsUntilReassigned(m *memberLog, ua string, reqs []stamped) []string {
	return e.staleBetween(m, ua, reqs, true)
}

func (e *env) staleBetween(m *memberLog, ua string, reqs []stamped, untilAgain bool) []string {
	var stale []string
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range reqs {
		if r.UserAgent != ua {
			continue
		}
		for _, id := range eventIDs(e.t, r.Body) {
			p := e.byEvent[id].partition
			if at, ok := m.ended[p]; ok && r.at.After(at) && (!untilAgain || m.again.IsZero() || r.at.Before(m.again)) {
				stale = append(stale, id)
			}
		}
	}
	return stale
}

type stamped struct {
	sandbox.Request
	at time.Time
}

// recordRequests keeps every request as it arrives at the collector,
// stamped with its arrival: a request cancelled by its sender while the
// collector held it may still be answered, but it was sent before.
func (e *env) recordRequests() func() []stamped {
	var mu sync.Mutex
	var out []stamped
	next := e.collect.Config.Handler
	e.collect.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		mu.Lock()
		out = append(out, stamped{sandbox.Request{URL: r.URL.RequestURI(), Body: string(body), UserAgent: r.UserAgent()}, at})
		mu.Unlock()
		next.ServeHTTP(w, r)
	})
	return func() []stamped {
		mu.Lock()
		defer mu.Unlock()
		return append([]stamped(nil), out...)
	}
}

// TestRevokedPartitionsStopSending is issue 9 (3): a second member joins
// while the collector holds every request and the backlog is larger than
// the drain: after the first member's revoke returns, the collector
// receives no event of a revoked partition from it, and nothing is lost.
// Mutation caught: not ending the assignment's context in endAssignments
// (held requests complete after the revoke: stale hits), or not purging
// the queues (queued hits of revoked partitions are sent later).
func TestRevokedPartitionsStopSending(t *testing.T) {
	e := newEnv(t, 6)
	e.produce(fixture.Generate(fixture.Options{Seed: 93, Events: 3000, EventsPerVisitor: 2}), 0)
	cfg := e.config(1000, time.Second) // drain = shutdown_timeout = 1 s
	opts, report := e.watchCommits()
	requests := e.recordRequests()
	ctx := waitCtx(t)

	first, a := watchedMember(opts, "partitions revoked")
	e.start(cfg, a)
	if err := e.collector.WaitHits(ctx, e.wantDelivered()/10); err != nil {
		t.Fatal(err)
	}
	release := e.collector.Hold()
	b := opts
	b.SinkHooks = func(c *atinternet.Config) { c.UserAgent = "atrelay/member-b" }
	e.start(cfg, b)
	select {
	case <-first.signal:
	case <-ctx.Done():
		t.Fatal("the first member's partitions were never revoked")
	}
	release()
	e.finish(ctx, report)
	if stale := e.staleHits(first, "atrelay/member-a", requests()); len(stale) > 0 {
		t.Fatalf("member-a sent %d events of partitions revoked from it, after the revoke: %v", len(stale), stale[:min(5, len(stale))])
	}
	if e.metrics.get("abandoned", "revoked") == 0 {
		t.Fatal("no record was released at the revoke: the drain never cut into a backlog, the test proves nothing")
	}
}

// TestLostPartitionsStopSending is issue 9 (3) for a zombie: the broker
// ends the member's session (its heartbeat answered UNKNOWN_MEMBER_ID)
// while the collector holds its requests: once its loss returns, it sends
// nothing of those partitions until they are assigned to it again.
// Mutation caught: lost() not calling endAssignments (the held requests and
// queued hits of lost partitions are delivered after the loss).
func TestLostPartitionsStopSending(t *testing.T) {
	e := newEnv(t, 3)
	e.kafka.RequireFake(t)
	e.produce(fixture.Generate(fixture.Options{Seed: 94, Events: 2000, EventsPerVisitor: 2}), 0)
	opts, report := e.watchCommits()
	requests := e.recordRequests()
	ctx := waitCtx(t)
	lost, a := watchedMember(opts, "partitions lost")
	e.start(e.config(1000, 5*time.Second), a)
	if err := e.collector.WaitHits(ctx, e.wantDelivered()/10); err != nil {
		t.Fatal(err)
	}
	release := e.collector.Hold()
	fake := e.kafka.Fake()
	var once sync.Once
	fake.ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		handled := false
		once.Do(func() { handled = true })
		if !handled {
			return nil, nil, false
		}
		resp := req.(*kmsg.HeartbeatRequest).ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp, nil, true
	})
	select {
	case <-lost.signal:
	case <-ctx.Done():
		t.Fatal("the member never lost its partitions")
	}
	// Stale = recorded after the loss and before being assigned again:
	// forget the loss at the next assignment.
	release()
	e.finish(ctx, report)
	if stale := e.staleHitsUntilReassigned(lost, "atrelay/member-a", requests()); len(stale) > 0 {
		t.Fatalf("member-a sent %d events of lost partitions after losing them: %v", len(stale), stale[:min(5, len(stale))])
	}
	if e.metrics.get("abandoned", "lost") == 0 {
		t.Fatal("nothing was released at the loss: the test proves nothing")
	}
}

// TestSlowCollectorRestartBound is issue 9 (4): a slow collector (100 ms a
// request, 2 in flight per site), SIGTERM at 20% delivered with a shutdown
// timeout far shorter than the backlog, then a restart: each site sends
// oldest first, so the committed offset follows delivery and the restart
// re-sends at most what was in flight at the signal.
// Mutation caught: sending each flush on its own goroutine racing for the
// site's slots (the pre-fix design: newer requests overtake older ones,
// the commit lags and the restart re-sends hundreds).
func TestSlowCollectorRestartBound(t *testing.T) {
	e := newEnv(t, 4)
	e.produce(fixture.Generate(fixture.Options{Seed: 95, Events: 2000, EventsPerVisitor: 2}), 0)
	next := e.collect.Config.Handler
	e.collect.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // the collector's slowness is the fault under test
		case <-time.After(100 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		next.ServeHTTP(w, r)
	})
	cfg := e.config(2000, time.Second)
	cfg.Delivery.Relay.Concurrency = 2
	opts, report := e.watchCommits()
	ctx := waitCtx(t)
	first := e.start(cfg, opts)
	if err := e.collector.WaitHits(ctx, e.wantDelivered()/5); err != nil {
		t.Fatal(err)
	}
	first.stop(t)
	e.start(cfg, opts)
	got := e.finish(ctx, report)
	dups := duplicates(got)
	bound := cfg.Delivery.Relay.Concurrency * 50 * 2 // two sites receive hits
	t.Logf("duplicates after SIGTERM with a slow collector: %d (in-flight bound %d)", dups, bound)
	if dups > bound {
		t.Fatalf("%d duplicates, more than the %d that can be in flight at the signal", dups, bound)
	}
}

// TestHugeRecordIsDeadLetteredAsPointer is issue 9 (2) through the whole
// service: a 5 MB record that cannot be decoded, in a topic that allows it,
// while the DLQ topic keeps the default 1 MB limit: it is dead-lettered as
// a pointer (no value, its source and size in headers), its partition
// commits past it, and every other event is delivered.
// Mutation caught: a DLQ writer that never shrinks a record to a pointer
// (both size checks in dlq.write disabled): MESSAGE_TOO_LARGE forever, and
// partition 1 never commits past the record (tried: committed 149 of 314).
func TestHugeRecordIsDeadLetteredAsPointer(t *testing.T) {
	e := newEnv(t, 2)
	adm := e.kafka.Admin(t)
	limit := "16777216"
	if _, err := adm.AlterTopicConfigs(waitCtx(t), []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &limit}}, e.topic); err != nil {
		t.Fatal(err)
	}
	e.produce(fixture.Generate(fixture.Options{Seed: 96, Events: 300}), 0)
	huge := &kgo.Record{Topic: e.topic, Partition: 1, Key: []byte("huge"), Value: bytes.Repeat([]byte{0xff}, 5<<20),
		Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}}
	cl := e.kafka.Client(t, kgo.ProducerBatchMaxBytes(16<<20), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := cl.ProduceSync(waitCtx(t), huge).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e.produce(fixture.Generate(fixture.Options{Seed: 97, Events: 300}), 0)
	opts, report := e.watchCommits()
	e.start(e.config(500, 10*time.Second), opts)
	e.finish(waitCtx(t), report)

	dead := e.kafka.ReadAll(t, e.topic+".dlq", 1)
	h := headers(dead[0])
	if len(dead[0].Value) != 0 || string(dead[0].Key) != "huge" || h["origin"] != "test" ||
		h[dlq.HeaderReason] != dlq.ReasonTooLarge || h[dlq.HeaderOriginalReason] == "" || h[dlq.HeaderSize] != strconv.Itoa(5<<20) ||
		h[dlq.HeaderTopic] != e.topic || h[dlq.HeaderPartition] != "1" || h[dlq.HeaderOffset] != strconv.FormatInt(huge.Offset, 10) {
		t.Fatalf("DLQ record is not a pointer to the huge record: %d bytes of value, key %q, headers %v", len(dead[0].Value), dead[0].Key, h)
	}
}
