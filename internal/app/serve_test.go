package app_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/internal/telemetry"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/internal/testtls"
	"github.com/atrelay/atrelay/schemas"
)

const schemaID = 1

// world is one test's surroundings: a broker with the topic and its DLQ
// topic, a registry, a collector, and events of the news app, every one of
// which the news integration delivers.
type world struct {
	t         *testing.T
	kafka     *testkafka.Cluster
	topic     string
	group     string
	reg       *srfake.Registry
	collector *sandbox.Collector
	collect   *httptest.Server
	events    []codec.Event
}

func newWorld(t *testing.T, partitions int32, events int) *world {
	t.Helper()
	w := &world{t: t, kafka: testkafka.New(t)}
	w.topic = w.kafka.Name(t, "events")
	w.group = w.kafka.Name(t, "group")
	w.kafka.CreateTopic(t, w.topic, partitions)
	w.kafka.CreateTopic(t, w.topic+".dlq", 1)
	w.reg = srfake.New()
	t.Cleanup(w.reg.Close)
	w.reg.SeedSchema(w.topic+"-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	w.collector = sandbox.New()
	w.collect = httptest.NewServer(w.collector)
	t.Cleanup(w.collect.Close)
	if events > 0 {
		w.events = fixture.Generate(fixture.Options{Seed: 7, Events: events, EventsPerVisitor: 2, Apps: []string{fixture.AppNews}})
		enc := fixture.MustEncoder("")
		recs := make([]*kgo.Record, len(w.events))
		for i := range w.events {
			ev := &w.events[i]
			recs[i] = &kgo.Record{Topic: w.topic, Partition: int32(i/2) % partitions, Key: []byte(ev.AnonymousUserID), Value: enc.Confluent(schemaID, ev)}
		}
		w.kafka.Produce(t, recs...)
	}
	return w
}

// config is the service's configuration in this world: the news
// integration only, listeners on ports the system chooses.
func (w *world) config(shutdown time.Duration) *config.Config {
	w.t.Helper()
	cfg := &config.Config{
		Kafka:        kafkaconn.Config{Brokers: w.kafka.Brokers(), Topic: w.topic, Group: w.group},
		Codec:        codec.Config{SchemaRegistry: codec.SchemaRegistry{URL: w.reg.URL()}},
		Integrations: fixture.Integrations(w.collect.URL)[1:2],
		Telemetry:    telemetry.Config{MetricsListen: "127.0.0.1:0", HealthListen: "127.0.0.1:0", ReadyTimeout: telemetry.MinReadyTimeout},
	}
	d := &cfg.Delivery
	d.Batch.Linger = 20 * time.Millisecond
	d.Batch.MaxEvents = 50
	d.Relay.Concurrency = 4
	d.Relay.Backoff.Min, d.Relay.Backoff.Max = 5*time.Millisecond, 100*time.Millisecond
	d.Relay.MaxBufferedEvents = 500
	d.Relay.CommitInterval = 50 * time.Millisecond
	d.Relay.ShutdownTimeout = shutdown
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		w.t.Fatal(err)
	}
	return cfg
}

// delivered returns how many distinct events reached the collector.
func (w *world) delivered() int {
	seen := map[string]bool{}
	for _, h := range w.collector.Hits() {
		seen[h.Data["event_id"].(string)] = true
	}
	return len(seen)
}

// waitDelivered waits until every event reached the collector at least
// once.
func (w *world) waitDelivered(ctx context.Context) {
	w.t.Helper()
	for n := len(w.events); w.delivered() < len(w.events); n = len(w.collector.Hits()) + 1 {
		if err := w.collector.WaitHits(ctx, n); err != nil {
			w.t.Fatalf("%d of %d events delivered: %v", w.delivered(), len(w.events), err)
		}
	}
}

// members returns how many members the group has.
func (w *world) members() int {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	groups, err := w.kafka.Admin(w.t).DescribeGroups(ctx, w.group)
	if err != nil {
		w.t.Fatal(err)
	}
	return len(groups[w.group].Members)
}

// running is one Serve in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
	logs   *logSink
}

func serve(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), logs: newLogSink()}
	go func() { r.done <- app.Serve(ctx, cfg, r.logs.logger()) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(90 * time.Second):
			t.Error("Serve did not return within 90 s of its cancellation")
		}
	})
	return r
}

// stop cancels Serve as SIGTERM does and returns how long it took to
// return, failing the test past limit.
func (r *running) stop(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	r.cancel()
	start := time.Now()
	select {
	case err := <-r.done:
		took := time.Since(start)
		if err != nil {
			t.Errorf("Serve() = %v", err)
		}
		r.done <- nil // the cleanup's wait returns at once
		if took > limit {
			t.Errorf("Serve returned %s after its cancellation, more than %s", took.Round(time.Millisecond), limit)
		}
		return took
	case <-time.After(limit + 60*time.Second):
		t.Fatalf("Serve did not return within %s of its cancellation", limit+60*time.Second)
		return 0
	}
}

// addr returns the address Serve bound for key ("metrics", "health").
func (r *running) addr(t *testing.T, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := r.logs.wait(ctx, func(l logLine) bool { return l.msg == "atrelay starting" })
	if err != nil {
		t.Fatalf("no \"atrelay starting\" line: %v", err)
	}
	return l.attrs[key]
}

// closeGraceBound is what Run promises beyond shutdown_timeout: the final
// commit and the leave (2 s), then the Kafka clients' close (at most about
// a second). The operability issue allows 5 s.
const closeGraceBound = 3 * time.Second

// TestCheckConnect is `check --connect` against local servers: a closed
// port, a collector with a certificate no one trusts, a working collector,
// a registry refusing the credentials, and a cluster where neither topic
// exists: every failure is listed with its cause, the working endpoint and
// the group are ok, and no hit is sent; with everything in place, nil.
// Mutations caught: the collect check as the old TCP dial (tried: the
// untrusted certificate passed, 4 failures instead of 5, and no request
// reached the collectors); both topics on one line, the last error winning
// as before (tried: the missing DLQ topic went unreported, 4 failures).
func TestCheckConnect(t *testing.T) {
	w := newWorld(t, 2, 0)
	var mu sync.Mutex
	var methods []string
	working := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method)
		mu.Unlock()
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(working.Close)
	untrusted := httptest.NewUnstartedServer(working.Config.Handler)
	untrusted.TLS = &tls.Config{Certificates: []tls.Certificate{*testtls.Untrusted(t)}}
	untrusted.StartTLS()
	t.Cleanup(untrusted.Close)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	reg := srfake.New(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("atrelay:right"))))
	t.Cleanup(reg.Close)

	base := func() *config.Config {
		cfg := w.config(time.Second)
		cfg.Codec.SchemaRegistry = codec.SchemaRegistry{URL: reg.URL(), Username: "atrelay", Password: "right"}
		cfg.Integrations = fixture.Integrations(working.URL)
		on := true
		cfg.Integrations[2].Enabled = &on // games
		return cfg
	}
	t.Run("failures", func(t *testing.T) {
		cfg := base()
		cfg.Kafka.Topic, cfg.Kafka.DLQTopic = w.topic+".absent", w.topic+".absent.dlq"
		cfg.Codec.SchemaRegistry.Password = "wrong"
		cfg.Integrations[0].CollectDomain = closed        // fitness
		cfg.Integrations[1].CollectDomain = untrusted.URL // news
		var out strings.Builder
		err := app.Check(context.Background(), cfg, true, &out)
		text := out.String()
		t.Log(text)
		if err == nil || !strings.Contains(err.Error(), "5 failed") {
			t.Errorf("Check = %v, want 5 failures", err)
		}
		for _, want := range []string{
			"ok   kafka brokers ",
			"FAIL topic " + cfg.Kafka.Topic + ": does not exist",
			"FAIL dlq topic " + cfg.Kafka.DLQTopic + ": does not exist",
			"ok   consumer group " + w.group + ": described",
			"FAIL schema registry " + reg.URL() + ": ",
			"FAIL collect endpoint " + closed + "/subscription (fitness): dial tcp " + strings.TrimPrefix(closed, "http://"),
			"connection refused",
			"FAIL collect endpoint " + untrusted.URL + "/event (news): TLS certificate rejected: tls: failed to verify certificate: x509: certificate signed by unknown authority",
			"ok   collect endpoint " + working.URL + "/event (games): reachable, plain HTTP, HTTP 204 to OPTIONS (no hit sent)",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("output lacks %q", want)
			}
		}
	})
	t.Run("all reachable", func(t *testing.T) {
		var out strings.Builder
		if err := app.Check(context.Background(), base(), true, &out); err != nil {
			t.Errorf("Check = %v, want nil\n%s", err, out.String())
		}
		if strings.Contains(out.String(), "FAIL") {
			t.Errorf("a check failed:\n%s", out.String())
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if len(methods) == 0 || slices.ContainsFunc(methods, func(m string) bool { return m != http.MethodOptions }) {
		t.Errorf("the collectors saw %v, want OPTIONS only: check must send no hit", methods)
	}
}

// countRequests counts the requests of each key the fake cluster receives
// and lets them through.
func countRequests(t *testing.T, c *testkafka.Cluster, keys ...kmsg.Key) map[kmsg.Key]*atomic.Int64 {
	fake := c.Fake()
	counts := map[kmsg.Key]*atomic.Int64{}
	for _, k := range keys {
		n := new(atomic.Int64)
		counts[k] = n
		fake.ControlKey(k.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			fake.KeepControl()
			n.Add(1)
			return nil, nil, false
		})
	}
	return counts
}

// TestServeFailsOnBusyListener: with metrics_listen on a port already in
// use, Serve returns the error at once, before the member looks for its
// coordinator, joins the group or fetches anything.
// Mutation caught: serving the listeners beside the relay, as before (tried:
// Serve ran the relay until its context ended, the group was joined and
// fetched, and the error came only at the end).
func TestServeFailsOnBusyListener(t *testing.T) {
	w := newWorld(t, 2, 20)
	w.kafka.RequireFake(t)
	counts := countRequests(t, w.kafka, kmsg.FindCoordinator, kmsg.JoinGroup, kmsg.Fetch)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg := w.config(time.Second)
	cfg.Telemetry.MetricsListen = taken.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = app.Serve(ctx, cfg, slog.New(slog.DiscardHandler))
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "telemetry.metrics_listen") {
		t.Errorf("Serve = %v, want EADDRINUSE naming telemetry.metrics_listen", err)
	}
	if ctx.Err() != nil {
		t.Error("Serve returned only when its context ended, not at once")
	}
	for k, n := range counts {
		if n.Load() != 0 {
			t.Errorf("%d %s requests before the start failed, want none", n.Load(), k.Name())
		}
	}
}

// TestShutdownWhileJoining cancels the service while it cannot join its
// group: the coordinator answers COORDINATOR_NOT_AVAILABLE, or the join
// hangs in the coordinator (as when it waits for a dead member's session
// to expire), or every broker closes each connection at once. Serve
// returns within shutdown_timeout + closeGraceBound every time. With the
// broker refusing, the failure is logged within 10 s, naming the seed
// brokers, and the client keeps trying; with the coordinator not
// available, the error is logged as the group's.
// Mutations caught: the Kafka client without the context that closeGrace
// cancels (tried: with the coordinator not available Serve returned after
// 42 s; the hanging join held it more than 65 s); no watchGroup (tried:
// nothing logged for 30 s while the coordinator was not available).
func TestShutdownWhileJoining(t *testing.T) {
	const shutdown = 2 * time.Second
	t.Run("coordinator not available", func(t *testing.T) {
		w := newWorld(t, 2, 20)
		w.kafka.RequireFake(t)
		fake := w.kafka.Fake()
		asked := make(chan struct{}, 1)
		fake.ControlKey(kmsg.FindCoordinator.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			fake.KeepControl()
			signal(asked)
			resp := req.(*kmsg.FindCoordinatorRequest).ResponseKind().(*kmsg.FindCoordinatorResponse)
			resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
			for _, key := range req.(*kmsg.FindCoordinatorRequest).CoordinatorKeys {
				c := kmsg.NewFindCoordinatorResponseCoordinator()
				c.Key, c.ErrorCode = key, kerr.CoordinatorNotAvailable.Code
				resp.Coordinators = append(resp.Coordinators, c)
			}
			return resp, nil, true
		})
		r := serve(t, w.config(shutdown))
		await(t, asked, "FindCoordinator")
		// Said within 10 s, and as what it is: the group's trouble, not a
		// fetch's. (franz-go retries the coordinator for 30 s before it
		// returns an error.)
		ctx, cancel := context.WithTimeout(context.Background(), 12*time.Second)
		defer cancel()
		if _, err := r.logs.wait(ctx, func(l logLine) bool {
			return l.msg == "consumer group session failed" && l.attrs["group"] == w.group
		}); err != nil {
			t.Errorf("no \"consumer group session failed\" line naming the group within 12 s: %v\n%s", err, r.logs)
		}
		r.stop(t, shutdown+closeGraceBound)
	})
	t.Run("join hangs", func(t *testing.T) {
		w := newWorld(t, 2, 20)
		w.kafka.RequireFake(t)
		fake := w.kafka.Fake()
		joining := make(chan struct{}, 1)
		release := make(chan struct{})
		t.Cleanup(func() { close(release) }) // before the cluster closes
		fake.ControlKey(kmsg.JoinGroup.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			fake.KeepControl()
			signal(joining)
			fake.SleepControl(func() { <-release })
			return nil, nil, false
		})
		r := serve(t, w.config(shutdown))
		await(t, joining, "JoinGroup")
		took := r.stop(t, shutdown+closeGraceBound)
		t.Logf("stopped %s after the cancellation, the join still in flight", took.Round(time.Millisecond))
	})
	t.Run("brokers refuse", func(t *testing.T) {
		w := newWorld(t, 2, 0)
		refusing, accepted := refusingBroker(t)
		cfg := w.config(shutdown)
		cfg.Kafka.Brokers = []string{refusing}
		start := time.Now()
		r := serve(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		l, err := r.logs.wait(ctx, func(l logLine) bool {
			return l.msg == "kafka connection failed" && strings.Contains(l.attrs["seeds"], refusing)
		})
		if err != nil {
			t.Fatalf("no \"kafka connection failed\" line naming the seed %s within 10 s: %v\n%s", refusing, err, r.logs)
		}
		t.Logf("after %s: %s %v", time.Since(start).Round(time.Millisecond), l.msg, l.attrs)
		// It keeps trying: more connections come.
		for len(accepted) > 0 {
			<-accepted
		}
		for i := range 2 {
			select {
			case <-accepted:
			case <-time.After(15 * time.Second):
				t.Fatalf("%d connection attempts in 15 s after the failure line, want the client to keep trying", i)
			}
		}
		r.stop(t, shutdown+closeGraceBound)
	})
}

// TestGroupErrorIsLoggedAsSuch: the coordinator refuses the join
// (GROUP_AUTHORIZATION_FAILED, an ACL missing): the log says the group's
// session failed, naming the group and the error, not that a fetch of
// partition 0 of topic "" failed.
// Mutation caught: logging every poll error as a fetch's, as before (tried:
// "fetch failed" with topic "" and partition 0, and no group line).
func TestGroupErrorIsLoggedAsSuch(t *testing.T) {
	w := newWorld(t, 2, 0)
	w.kafka.RequireFake(t)
	fake := w.kafka.Fake()
	fake.ControlKey(kmsg.JoinGroup.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		fake.KeepControl()
		resp := req.(*kmsg.JoinGroupRequest).ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode = kerr.GroupAuthorizationFailed.Code
		return resp, nil, true
	})
	r := serve(t, w.config(time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := r.logs.wait(ctx, func(l logLine) bool { return l.msg == "consumer group session failed" })
	if err != nil {
		t.Fatalf("no \"consumer group session failed\" line: %v\n%s", err, r.logs)
	}
	if l.attrs["group"] != w.group || !strings.Contains(l.attrs["error"], "GROUP_AUTHORIZATION_FAILED") {
		t.Errorf("group line %v, want the group %s and GROUP_AUTHORIZATION_FAILED", l.attrs, w.group)
	}
	r.stop(t, time.Second+closeGraceBound)
	if r.logs.has("fetch failed") {
		t.Errorf("a group error logged as a fetch's\n%s", r.logs)
	}
}

// TestShutdownWhileCollectorHangs: the collector holds every request, and
// the service is cancelled with records in flight: it returns within
// shutdown_timeout + closeGraceBound (the shutdown drain and the final
// revoke's drain share one deadline), leaves the group, and a restart
// delivers every event.
// Mutation caught: the revoke's drain ignoring the shutdown deadline, as
// before (tried: the final revoke drained again until closeGrace cut the
// client off, 6.0 s; the member never left the group, and the restart
// waited 45 s for its session to expire). With the client's context gone
// too (the code before this change), it returned after 8 s: two
// shutdown_timeouts.
func TestShutdownWhileCollectorHangs(t *testing.T) {
	const shutdown = 4 * time.Second
	w := newWorld(t, 3, 600)
	release := w.collector.Hold()
	t.Cleanup(release)
	arrived := make(chan struct{}, 1)
	next := w.collect.Config.Handler
	w.collect.Config.Handler = http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		signal(arrived)
		next.ServeHTTP(rw, r)
	})
	cfg := w.config(shutdown)
	first := serve(t, cfg)
	await(t, arrived, "a collect request")
	took := first.stop(t, shutdown+closeGraceBound)
	t.Logf("stopped %s after the cancellation (shutdown_timeout %s)", took.Round(time.Millisecond), shutdown)
	if !first.logs.has("shutdown timeout: abandoning unsettled records") {
		t.Errorf("no shutdown-timeout line: the test proves nothing\n%s", first.logs)
	}
	if first.logs.has("revoke: in-flight records did not settle in time") {
		t.Errorf("the final revoke drained again after the shutdown deadline\n%s", first.logs)
	}
	// It left the group: the partitions' next owner need not wait for its
	// session to expire.
	if members := w.members(); members != 0 {
		t.Errorf("%d member(s) in the group after the shutdown, want none", members)
	}
	release()

	second := serve(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w.waitDelivered(ctx)
	second.stop(t, shutdown+closeGraceBound)
	for _, r := range []*running{first, second} {
		if r.logs.has("kafka connection") || r.logs.has("consumer group session") || r.logs.has("fetch") {
			t.Errorf("Kafka trouble logged on a healthy cluster:\n%s", r.logs)
		}
	}
	if got, want := w.kafka.Committed(t, w.group, w.topic), w.kafka.EndOffsets(t, w.topic); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("committed %v after the restart delivered everything, want the end offsets %v", got, want)
	}
}

// TestServeReadiness: /readyz is 200 once the member owns partitions and
// talks to Kafka; when fetches and heartbeats stop being answered (they
// hang in the broker) it turns 503 within ready_timeout and a little, while
// the member still owns its partitions, and the lag series stay, at their
// last value, with their topic and group labels.
// Mutation caught: Serve not giving the health endpoint the relay's
// LastContact (tried: /readyz stayed 200 through 15 s of silence); the
// relay without its kafkaHooks (tried: /readyz never 200).
func TestServeReadiness(t *testing.T) {
	w := newWorld(t, 2, 100)
	w.kafka.RequireFake(t)
	fake := w.kafka.Fake()
	var hang atomic.Bool
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	for _, k := range []kmsg.Key{kmsg.Fetch, kmsg.Heartbeat} {
		fake.ControlKey(k.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
			fake.KeepControl()
			if hang.Load() {
				fake.SleepControl(func() { <-release })
			}
			return nil, nil, false
		})
	}
	cfg := w.config(2 * time.Second)
	r := serve(t, cfg)
	health, metrics := "http://"+r.addr(t, "health")+"/readyz", "http://"+r.addr(t, "metrics")+"/metrics"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	w.waitDelivered(ctx)
	if code, body := waitStatus(t, health, http.StatusOK, 30*time.Second); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q with partitions and contact, want 200", code, body)
	}
	lag := func(p int) string {
		return fmt.Sprintf(`atrelay_consumer_lag{group=%q,partition="%d",topic=%q`, w.group, p, w.topic)
	}
	text := get(t, metrics)
	for p := range 2 {
		if !strings.Contains(text, lag(p)) {
			t.Errorf("/metrics lacks %s\n%s", lag(p), text)
		}
	}

	hang.Store(true)
	start := time.Now()
	// The fetch waiting in the broker for data returns now, with this
	// record; the next ones hang.
	ev := fixture.Generate(fixture.Options{Seed: 8, Events: 1, Apps: []string{fixture.AppNews}})[0]
	w.kafka.Produce(t, &kgo.Record{Topic: w.topic, Value: fixture.MustEncoder("").Confluent(schemaID, &ev)})
	code, body := waitStatus(t, health, http.StatusServiceUnavailable, cfg.Telemetry.ReadyTimeout+10*time.Second)
	if code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d %q after %s of hanging fetches and heartbeats, want 503", code, body, time.Since(start).Round(time.Second))
	}
	t.Logf("503 after %s: %s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(body))
	if !strings.Contains(body, "no successful fetch or heartbeat") {
		t.Errorf("/readyz says %q, want the silence named (the member still owns its partitions)", body)
	}
	text = get(t, metrics)
	for p := range 2 {
		if !strings.Contains(text, lag(p)) {
			t.Errorf("/metrics lost the lag series of partition %d while fetches fail\n%s", p, text)
		}
	}
}

// refusingBroker listens on 127.0.0.1 and closes every connection at once;
// it returns its address and a channel that receives at each connection.
func refusingBroker(t *testing.T) (string, chan struct{}) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan struct{}, 1000)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			signal(accepted)
		}
	}()
	return l.Addr().String(), accepted
}

// signal notes an event without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func await(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s within 30 s", what)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// waitStatus probes url as a kubelet would, every 100 ms, until it answers
// want or within has passed; it returns the last answer.
func waitStatus(t *testing.T, url string, want int, within time.Duration) (int, string) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	probe := time.NewTicker(100 * time.Millisecond)
	defer probe.Stop()
	for {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == want {
			return resp.StatusCode, string(body)
		}
		select {
		case <-deadline.C:
			return resp.StatusCode, string(body)
		case <-probe.C:
		}
	}
}

// eventually checks cond every 100 ms, as a scraper would, until it holds
// or within has passed; it reports whether it held.
func eventually(within time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// logSink keeps the log lines of a Serve, for the tests to wait on.
type logSink struct {
	mu      sync.Mutex
	lines   []logLine
	changed chan struct{} // closed and replaced at each line
}

type logLine struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func newLogSink() *logSink { return &logSink{changed: make(chan struct{})} }

func (s *logSink) logger() *slog.Logger { return slog.New(&recorder{sink: s}) }

// wait returns the first line that matches, waiting for it until ctx ends.
func (s *logSink) wait(ctx context.Context, match func(logLine) bool) (logLine, error) {
	for i := 0; ; {
		s.mu.Lock()
		for ; i < len(s.lines); i++ {
			if match(s.lines[i]) {
				l := s.lines[i]
				s.mu.Unlock()
				return l, nil
			}
		}
		changed := s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return logLine{}, ctx.Err()
		}
	}
}

func (s *logSink) has(msg string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.ContainsFunc(s.lines, func(l logLine) bool { return strings.HasPrefix(l.msg, msg) })
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.lines {
		fmt.Fprintf(&b, "%s %s %v\n", l.level, l.msg, l.attrs)
	}
	return b.String()
}

// recorder is a slog.Handler writing to a logSink, from INFO up.
type recorder struct {
	sink  *logSink
	attrs []slog.Attr
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (r *recorder) WithGroup(string) slog.Handler                { return r }
func (r *recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &recorder{sink: r.sink, attrs: append(slices.Clip(r.attrs), as...)}
}

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	l := logLine{level: rec.Level, msg: rec.Message, attrs: map[string]string{}}
	for _, a := range r.attrs {
		l.attrs[a.Key] = a.Value.String()
	}
	rec.Attrs(func(a slog.Attr) bool {
		l.attrs[a.Key] = a.Value.String()
		return true
	})
	s := r.sink
	s.mu.Lock()
	s.lines = append(s.lines, l)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}
