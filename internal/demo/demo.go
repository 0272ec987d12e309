// Package demo runs the whole pipeline on embedded defaults: an in-process
// Kafka (kfake), schema registry (srfake) and sandbox collector, a realistic
// stream of Purchasely events, and the same service code as `atrelay run`,
// traced into memory: it ends by printing the trace of one delivered event.
package demo

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/atrelay/atrelay/deploy"
	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/schemas"
)

// Options shape a demo run.
type Options struct {
	Events int       // sample events (default 5000)
	Out    io.Writer // progress and summary
	// Progress is how often progress is printed (default 500ms).
	Progress time.Duration
}

// Summary is what the demo delivered.
type Summary struct {
	Produced  int                      // records produced, poison pills included
	Consumed  int64                    // records consumed
	Delivered int64                    // hits the collector accepted
	Filtered  map[string]int64         // drops by reason
	DLQ       int64                    // records dead-lettered
	PerSite   map[int64]map[string]int // hits per site and event name, as the collector saw them
	Rejected  int                      // requests the collector rejected
	Requests  []sandbox.Request        // the first requests, exactly as sent
	Sites     map[int64]string         // site id -> integration name
	// Warnings are the service's log messages at WARN and above (not
	// printed: the demo's collector is plain HTTP, which the service warns
	// about); a missing parking topic would be one.
	Warnings []string
}

// Poison is how many corrupt records the demo stream carries.
const Poison = 5

// SchemaID is the registry id of the subscription event schema in the demo.
const SchemaID = 1

// Run runs the demo until every record is settled, prints the summary and
// returns it. It fails if anything is left unsettled or a hit was rejected.
func Run(ctx context.Context, o Options) (*Summary, error) {
	if o.Events <= 0 {
		o.Events = 5000
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Progress <= 0 {
		o.Progress = 500 * time.Millisecond
	}
	const topic, partitions = "purchasely.subscription-events", 6
	// The parking topic too, as kafka.park_topic defaults it: without it a
	// failing site could not be parked (and the service warns at start).
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic),
		kfake.SeedTopics(1, topic+kafkaconn.DLQSuffix), kfake.SeedTopics(1, topic+kafkaconn.ParkSuffix))
	if err != nil {
		return nil, fmt.Errorf("demo: kafka: %w", err)
	}
	defer cluster.Close()
	reg := srfake.New()
	defer reg.Close()
	reg.SeedSchema(topic+"-value", 1, SchemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	collector := sandbox.New(sandbox.WithMaxRawRequests(3))
	collect := httptest.NewServer(collector)
	defer collect.Close()

	vars := map[string]string{
		"DEMO_BROKERS":   strings.Join(cluster.ListenAddrs(), ","),
		"DEMO_REGISTRY":  reg.URL(),
		"DEMO_COLLECTOR": collect.URL,
	}
	cfg, err := config.Parse(deploy.DemoConfig, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		return nil, fmt.Errorf("demo: deploy/demo.yaml: %w", err)
	}
	fmt.Fprintf(o.Out, "atrelay demo: Kafka %s, schema registry %s, sandbox collector %s\n", vars["DEMO_BROKERS"], vars["DEMO_REGISTRY"], collect.URL)

	// Every span, the producer's included, is kept in memory for the trace
	// printed at the end.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer tp.Shutdown(context.WithoutCancel(ctx))

	produced, err := produce(ctx, cluster.ListenAddrs(), topic, partitions, o.Events, relay.NewTracer(tp, relay.TracerOptions{}))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(o.Out, "produced %d records (%d sample events in 3 framings, %d corrupt) to %s\n", produced, o.Events, Poison, topic)

	counts := &counts{filtered: map[string]int64{}}
	warned := &warnings{}
	svc, err := app.Build(cfg, app.Options{Metrics: counts, TracerProvider: tp, Logger: slog.New(warned)})
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()

	start := time.Now()
	tick := time.NewTicker(o.Progress)
	defer tick.Stop()
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	var runErr error
wait:
	for {
		select {
		case <-tick.C:
			counts.print(o.Out, time.Since(start))
			if counts.settledAll(produced) {
				break wait
			}
		case <-deadline.C:
			runErr = errors.New("demo: not everything settled within 60s")
			break wait
		case <-ctx.Done():
			runErr = ctx.Err()
			break wait
		case err := <-done:
			return nil, fmt.Errorf("demo: service stopped early: %w", err)
		}
	}
	stop()
	if err := <-done; err != nil {
		return nil, err
	}
	counts.print(o.Out, time.Since(start))

	s := counts.summary(produced)
	st := collector.Stats()
	s.PerSite, s.Rejected, s.Requests = st.PerSite, st.Rejections, collector.Requests()
	s.Delivered = int64(st.Hits)
	s.Warnings = warned.list()
	s.Sites = map[int64]string{}
	for _, in := range cfg.Integrations {
		s.Sites[in.SiteID] = in.Name
	}
	s.print(o.Out)
	if t := newEventTrace(spans.Ended()); t != nil {
		t.print(o.Out)
	} else {
		fmt.Fprintln(o.Out, "\n  no delivered event was traced")
	}
	if runErr != nil {
		return s, runErr
	}
	if s.Rejected > 0 {
		return s, fmt.Errorf("demo: the sandbox collector rejected %d requests", s.Rejected)
	}
	return s, nil
}

// produce writes the sample stream: events keyed and partitioned by visitor,
// most Confluent-framed, some single-object and raw, plus a few corrupt ones,
// each with the traceparent of its send span, as a traced producer writes it.
func produce(ctx context.Context, brokers []string, topic string, partitions int32, n int, tracer *relay.Tracer) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.WithHooks(tracer))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	enc := fixture.MustEncoder("")
	events := fixture.Generate(fixture.Options{Seed: 2026, Events: n, EventsPerVisitor: 3})
	recs := make([]*kgo.Record, 0, n+Poison)
	for i := range events {
		ev := &events[i]
		h := fnv.New32a()
		h.Write([]byte(ev.AnonymousUserID))
		var value []byte
		switch i % 10 {
		case 8:
			value = enc.SingleObject(ev)
		case 9:
			value = enc.Raw(ev)
		default:
			value = enc.Confluent(SchemaID, ev)
		}
		p := int32(h.Sum32() % uint32(partitions))
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte(ev.AnonymousUserID), Value: value})
		if i%(n/Poison+1) == n/(2*Poison) && len(recs) < n+Poison {
			kind := []string{fixture.CorruptTruncated, fixture.CorruptGarbage, fixture.CorruptUnknownSchema}[i%3]
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Key: []byte("corrupt"), Value: enc.Corrupt(kind, ev)})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return 0, fmt.Errorf("demo: produce: %w", err)
	}
	return len(recs), nil
}

// warnings is a slog.Handler that keeps the messages at WARN and above,
// its derived handlers (WithAttrs) included.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (w *warnings) WithAttrs([]slog.Attr) slog.Handler           { return w }
func (w *warnings) WithGroup(string) slog.Handler                { return w }

func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, r.Message)
	return nil
}

func (w *warnings) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}

// counts is the demo's view of relay.Metrics.
type counts struct {
	mu        sync.Mutex
	consumed  int64
	delivered int64
	dlq       int64
	filtered  map[string]int64
}

func (c *counts) Consumed(context.Context, string, int32) {
	c.mu.Lock()
	c.consumed++
	c.mu.Unlock()
}

func (c *counts) Settled(_ context.Context, outcome, reason string, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch outcome {
	case pipeline.Delivered.String():
		c.delivered += n
	case pipeline.Rejected.String():
		c.dlq += n
	default:
		c.filtered[reason] += n
	}
}

func (c *counts) DeliveryLatency(context.Context, string, time.Duration) {}
func (c *counts) Commit(context.Context, bool)                           {}
func (c *counts) Abandoned(context.Context, string, int64)               {}
func (c *counts) DLQWriteError(context.Context, string)                  {}
func (c *counts) Adjusted(context.Context, string, int64)                {}

func (c *counts) settledAll(produced int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.delivered + c.dlq
	for _, v := range c.filtered {
		n += v
	}
	return n == int64(produced)
}

func (c *counts) print(w io.Writer, elapsed time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var f int64
	for _, v := range c.filtered {
		f += v
	}
	fmt.Fprintf(w, "  %5.1fs  consumed %6d  delivered %6d  filtered %6d  dead-lettered %3d\n", elapsed.Seconds(), c.consumed, c.delivered, f, c.dlq)
}

func (c *counts) summary(produced int) *Summary {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &Summary{Produced: produced, Consumed: c.consumed, DLQ: c.dlq, Filtered: map[string]int64{}}
	for k, v := range c.filtered {
		s.Filtered[k] = v
	}
	return s
}

func (s *Summary) print(w io.Writer) {
	fmt.Fprintf(w, "\nSummary: %d records, %d hits delivered, %d filtered, %d dead-lettered, %d requests rejected\n",
		s.Produced, s.Delivered, sum(s.Filtered), s.DLQ, s.Rejected)
	sites := make([]int64, 0, len(s.PerSite))
	for site := range s.PerSite {
		sites = append(sites, site)
	}
	slices.Sort(sites)
	for _, site := range sites {
		names := make([]string, 0, len(s.PerSite[site]))
		total := 0
		for n, c := range s.PerSite[site] {
			names = append(names, n)
			total += c
		}
		slices.Sort(names)
		fmt.Fprintf(w, "\n  integration %s (site %d): %d hits\n", s.Sites[site], site, total)
		for _, n := range names {
			fmt.Fprintf(w, "    %-32s %6d\n", n, s.PerSite[site][n])
		}
	}
	fmt.Fprintln(w, "\n  dropped, by reason:")
	reasons := make([]string, 0, len(s.Filtered))
	for r := range s.Filtered {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		fmt.Fprintf(w, "    %-32s %6d\n", r, s.Filtered[r])
	}
	fmt.Fprintf(w, "    %-32s %6d  (topic purchasely.subscription-events.dlq)\n", "dead-lettered", s.DLQ)
	fmt.Fprintln(w, "\n  requests exactly as sent:")
	for _, r := range s.Requests {
		fmt.Fprintf(w, "    %s %s  -> %d\n      %s\n", r.Method, r.URL, r.Status, r.Body)
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
