// Package telemetry wires OpenTelemetry metrics (exported for Prometheus,
// and over OTLP when configured), traces (exported over OTLP when
// configured), the Kafka clients' metric hooks, trace ids in log lines, and
// the health endpoints, once, at the edges of the service.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"

	"github.com/atrelay/atrelay/pipeline"
)

// Telemetry owns the meter provider and its Prometheus registry, and the
// tracer provider when traces are exported.
type Telemetry struct {
	Provider *sdkmetric.MeterProvider
	Metrics  *Metrics
	// Tracing is nil unless OTLP trace export is configured through the
	// standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables: without an
	// exporter, spans would cost CPU for nothing.
	Tracing *sdktrace.TracerProvider
	// OTLPMetrics reports whether metrics are also exported over OTLP
	// (OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT), besides /metrics.
	OTLPMetrics bool

	registry *prometheus.Registry
	spans    *spanQueue // nil when Tracing is
	kafka    []kgo.Hook
}

// Options are what Setup needs.
type Options struct {
	ServiceName, Version string
	// MaxBufferedEvents is delivery.max_buffered_events: the span queue
	// holds SpansPerRecord spans per buffered record (OTEL_BSP_MAX_QUEUE_SIZE,
	// when set, wins).
	MaxBufferedEvents int
	// Integrations name the configured integrations: their counters exist,
	// at 0, from the first scrape.
	Integrations []string
	// Logger receives the dropped-span lines (at most one a minute); nil
	// discards them.
	Logger *slog.Logger
}

// Setup builds the meter provider with a Prometheus exporter on a registry
// of its own (no global state), which also serves the Go runtime and
// process metrics (go_*, process_*); with OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_METRICS_ENDPOINT set, metrics are also pushed over
// OTLP/HTTP. With OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, it builds the tracer provider,
// whose span queue is sized for MaxBufferedEvents and counts what it drops,
// and whose sampler is the SDK's: OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG, else parentbased_always_on. The resource
// follows OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (newResource). The
// exporters read the other OTEL_* variables themselves.
func Setup(o Options) (*Telemetry, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	reg := prometheus.NewRegistry()
	// The Prometheus client's own collectors rather than OpenTelemetry's
	// runtime instrumentation: no new dependency, the process metrics
	// (resident memory, CPU, file descriptors) that the runtime
	// instrumentation lacks, and the go_*/process_* names every Go
	// dashboard knows. They are served on /metrics only, not pushed over
	// OTLP.
	if err := errors.Join(
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		return nil, fmt.Errorf("telemetry: runtime collectors: %w", err)
	}
	// No otel_scope_* labels: every series would carry the instrumentation
	// library's name and version, which no query needs.
	prom, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	res, err := newResource(o)
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES: the rest still applies.
		o.Logger.Warn("telemetry: resource partly detected", "error", err)
	}
	mopts := []sdkmetric.Option{sdkmetric.WithReader(prom), sdkmetric.WithResource(res), sdkmetric.WithView(kotelView)}
	otlpMetrics := os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != ""
	if otlpMetrics {
		exp, err := otlpmetrichttp.New(context.Background())
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp metric exporter: %w", err)
		}
		// Every OTEL_METRIC_EXPORT_INTERVAL (default 60 s), and once more
		// at Shutdown.
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	m, err := NewMetrics(mp)
	if err != nil {
		return nil, err
	}
	m.zero(context.Background(), o.Integrations)
	kafka, err := kafkaHooks(mp)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{Provider: mp, Metrics: m, OTLPMetrics: otlpMetrics, registry: reg, kafka: kafka}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp trace exporter: %w", err)
		}
		t.spans = newSpanQueue(exp, spanQueueSize(o.MaxBufferedEvents), m, o.Logger)
		t.Tracing = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(t.spans), sdktrace.WithResource(res))
	}
	return t, nil
}

// newResource describes the service to both providers: service.name is
// OTEL_SERVICE_NAME, else a service.name in OTEL_RESOURCE_ATTRIBUTES, else
// the configuration's service_name; OTEL_RESOURCE_ATTRIBUTES adds the
// deployment's own attributes, and the SDK its telemetry.sdk.* ones. On a
// malformed variable it returns what it could detect with the error.
func newResource(o Options) (*resource.Resource, error) {
	res, err := resource.New(context.Background(),
		// Later detectors win: the variables override the configuration.
		resource.WithAttributes(semconv.ServiceName(o.ServiceName), semconv.ServiceVersion(o.Version)),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
	)
	if res == nil {
		res = resource.NewSchemaless(semconv.ServiceName(o.ServiceName), semconv.ServiceVersion(o.Version))
	}
	return res, err
}

// Handler serves /metrics.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// KafkaHooks are the Kafka clients' metric hooks, on the meter provider:
// franz-go's kotel meter (connections by outcome, disconnects, read and
// write errors and bytes, produced and fetched bytes and records, by
// broker and topic) and the brokers' throttling. Install them on every
// client (kgo.WithHooks).
func (t *Telemetry) KafkaHooks() []kgo.Hook { return t.kafka }

// Shutdown flushes the providers: the spans still queued, and a last OTLP
// metric export.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var err error
	if t.Tracing != nil {
		err = t.Tracing.Shutdown(ctx)
		t.spans.log.Flush()
	}
	return errors.Join(err, t.Provider.Shutdown(ctx))
}

// Metrics are atrelay's instruments. The methods are safe for concurrent use
// and, once an attribute set was seen, allocate nothing.
type Metrics struct {
	consumed     metric.Int64Counter
	settled      metric.Int64Counter
	requests     metric.Float64Histogram
	retries      metric.Int64Counter
	latency      metric.Float64Histogram
	adjusted     metric.Int64Counter
	commits      metric.Int64Counter
	abandoned    metric.Int64Counter
	dlqErrors    metric.Int64Counter
	rebalances   metric.Int64Counter
	offsetGap    metric.Int64Counter
	spansDropped metric.Int64Counter
	bisections   metric.Int64Counter
	bisected     metric.Int64Counter
	pausedSites  metric.Int64UpDownCounter
	parkingSites metric.Int64UpDownCounter
	meter        metric.Meter

	// sets caches an attribute option per label set, built once: every
	// record is counted several times, and a key of strings (a struct, not
	// a concatenation boxed into a sync.Map) costs no allocation.
	setsMu sync.RWMutex
	sets   map[optKey]attrOpts
}

// attrOpts is one label set as the variadic options of Add and Record,
// kept as slices so that passing them does not allocate one per call.
type attrOpts struct {
	add    []metric.AddOption
	record []metric.RecordOption
}

// optKey names one label set of one instrument family: a kind (which
// labels) and the label values.
type optKey struct {
	kind optKind
	a, b string
	n    int
}

// optKind says which labels an optKey's values are.
type optKind uint8

const (
	optConsumed  optKind = iota + 1 // topic, partition
	optSettled                      // outcome, reason
	optSite                         // integration
	optRequest                      // integration, status
	optRetry                        // integration, reason
	optReason                       // reason
	optCommit                       // result
	optRebalance                    // kind
	optOffsetGap                    // topic
	optPaused                       // integration, status
)

// NewMetrics creates the instruments on a meter provider.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{meter: mp.Meter("github.com/atrelay/atrelay"), sets: map[optKey]attrOpts{}}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	m.consumed, err = m.meter.Int64Counter("atrelay.records.consumed", metric.WithUnit("{record}"), metric.WithDescription("Records polled from Kafka."))
	add(err)
	m.settled, err = m.meter.Int64Counter("atrelay.records.settled", metric.WithUnit("{record}"), metric.WithDescription("Records settled, by outcome (delivered, filtered, dlq) and reason."))
	add(err)
	m.requests, err = m.meter.Float64Histogram("atrelay.http.client.request.duration", metric.WithUnit("s"), metric.WithDescription("Collect request attempts, by site and status."),
		metric.WithExplicitBucketBoundaries(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	add(err)
	m.retries, err = m.meter.Int64Counter("atrelay.http.client.retries", metric.WithUnit("{retry}"), metric.WithDescription("Collect request retries, by site and reason."))
	add(err)
	m.latency, err = m.meter.Float64Histogram("atrelay.delivery.latency", metric.WithUnit("s"), metric.WithDescription("From the event's creation to its delivery."),
		metric.WithExplicitBucketBoundaries(0.1, 0.5, 1, 5, 10, 30, 60, 300, 3600, 86400))
	add(err)
	m.adjusted, err = m.meter.Int64Counter("atrelay.properties.adjusted", metric.WithUnit("{value}"),
		metric.WithDescription("Property values changed to fit Piano's limits, by reason: truncated (a string cut to 255 characters), out_of_range (a decimal beyond ±1e15, left out)."))
	add(err)
	m.abandoned, err = m.meter.Int64Counter("atrelay.records.abandoned", metric.WithUnit("{record}"), metric.WithDescription("Records released unsettled, for the partition's next owner, by reason (revoked, lost, shutdown)."))
	add(err)
	m.dlqErrors, err = m.meter.Int64Counter("atrelay.dlq.write.errors", metric.WithUnit("{error}"), metric.WithDescription("Failed writes to the dead-letter topic, by reason (too_large, unknown_topic, timeout, error); each is retried."))
	add(err)
	m.commits, err = m.meter.Int64Counter("atrelay.offsets.commits", metric.WithUnit("{commit}"), metric.WithDescription("Offset commits, by result (ok, error)."))
	add(err)
	m.rebalances, err = m.meter.Int64Counter("atrelay.consumer.rebalances", metric.WithUnit("{rebalance}"),
		metric.WithDescription("Changes of this member's partitions, by kind: assigned, revoked (both in a normal rebalance), lost (the group session ended)."))
	add(err)
	m.offsetGap, err = m.meter.Int64Counter("atrelay.consumer.offset_gap.records", metric.WithUnit("{record}"),
		metric.WithDescription("Records a partition's committed offset pointed to that retention deleted before the group read them (the committed offset was below the log start), by topic."))
	add(err)
	m.spansDropped, err = m.meter.Int64Counter("atrelay.telemetry.spans.dropped", metric.WithUnit("{span}"),
		metric.WithDescription("Spans never exported, by reason: queue_full (export did not keep up), export_failed (the OTLP endpoint refused them or was unreachable)."))
	add(err)
	m.bisections, err = m.meter.Int64Counter("atrelay.delivery.bisections", metric.WithUnit("{bisection}"),
		metric.WithDescription("Requests of several events answered 400, split in halves and sent again until the rejected events stood alone, by integration."))
	add(err)
	m.bisected, err = m.meter.Int64Counter("atrelay.delivery.bisection.requests", metric.WithUnit("{request}"),
		metric.WithDescription("Requests the bisections sent beyond the rejected ones, by integration."))
	add(err)
	m.pausedSites, err = m.meter.Int64UpDownCounter("atrelay.sites.paused", metric.WithUnit("{site}"),
		metric.WithDescription("1 while an integration's site is paused by a reject storm (its records wait, neither delivered nor dead-lettered), by integration and the status that paused it."))
	add(err)
	m.parkingSites, err = m.meter.Int64UpDownCounter("atrelay.sites.parking", metric.WithUnit("{site}"),
		metric.WithDescription("1 while an integration's site, failing for longer than park_after, has its records written to the parking topic, by integration."))
	add(err)
	return m, errors.Join(errs...)
}

// The label values known before anything happens. zero makes their series
// exist, at 0, from the first collection, so that increase() and alerts
// see a counter before its first event, not from its second.
var (
	// settledAtStart are the outcomes with their finite reasons: every
	// filter reason (pipeline's, and the relay's already_settled), and the
	// decode and stage failures (codec.PermanentError's labels, the
	// relay's decode_error and stage_error). A collector's refusals
	// (dlq/http_4xx) are not known in advance.
	settledAtStart = func() [][2]string {
		out := [][2]string{{pipeline.Delivered.String(), ""}}
		for _, d := range []*pipeline.Dropped{pipeline.ErrNoIntegration, pipeline.ErrIntegrationDisabled, pipeline.ErrEventNotEnabled,
			pipeline.ErrEnvironmentDisabled, pipeline.ErrNoIDClient, {Reason: "already_settled"}} {
			out = append(out, [2]string{pipeline.Filtered.String(), d.Reason})
		}
		for _, r := range []string{"corrupt", "bad_framing", "unknown_schema", "missing_field", "wrong_type", "decode_error", "stage_error"} {
			out = append(out, [2]string{pipeline.Rejected.String(), r})
		}
		return out
	}()
	// retryReasonsAtStart are, per integration, the collect client's
	// failures without a response (atinternet.ErrorReason) and the
	// transient statuses collectors answer most.
	retryReasonsAtStart = []string{"connection_refused", "dns", "tls", "timeout", "reset", "redirects", "connection",
		"http_429", "http_500", "http_502", "http_503", "http_504"}
	abandonedAtStart    = []string{"revoked", "lost", "shutdown"}
	adjustedAtStart     = []string{"truncated", "out_of_range"}
	dlqErrorsAtStart    = []string{"too_large", "unknown_topic", "timeout", "error"}
	rebalancesAtStart   = []string{RebalanceAssigned, RebalanceRevoked, RebalanceLost}
	spansDroppedAtStart = []string{DropQueueFull, DropExportFailed}
)

// zero adds 0 to every counter series known at start.
func (m *Metrics) zero(ctx context.Context, integrations []string) {
	for _, s := range settledAtStart {
		m.Settled(ctx, s[0], s[1], 0)
	}
	for _, in := range integrations {
		for _, r := range retryReasonsAtStart {
			m.retries.Add(ctx, 0, m.retryOpt(in, r).add...)
		}
		m.bisections.Add(ctx, 0, m.site(in).add...)
		m.bisected.Add(ctx, 0, m.site(in).add...)
		m.parkingSites.Add(ctx, 0, m.site(in).add...)
	}
	for _, r := range abandonedAtStart {
		m.Abandoned(ctx, r, 0)
	}
	for _, r := range adjustedAtStart {
		m.Adjusted(ctx, r, 0)
	}
	for _, r := range dlqErrorsAtStart {
		m.dlqErrors.Add(ctx, 0, m.reasonOpt(r).add...)
	}
	for _, ok := range []bool{true, false} {
		m.commits.Add(ctx, 0, m.commitOpt(ok).add...)
	}
	for _, k := range rebalancesAtStart {
		m.rebalances.Add(ctx, 0, m.opt(optKey{kind: optRebalance, a: k}, func() attribute.Set { return attribute.NewSet(attribute.String("kind", k)) }).add...)
	}
	for _, r := range spansDroppedAtStart {
		m.SpansDropped(ctx, r, 0)
	}
}

// opt returns the cached attribute option for a key, building it once.
// build must not escape, so that its closure stays on the caller's stack.
func (m *Metrics) opt(key optKey, build func() attribute.Set) attrOpts {
	m.setsMu.RLock()
	o, ok := m.sets[key]
	m.setsMu.RUnlock()
	if ok {
		return o
	}
	m.setsMu.Lock()
	defer m.setsMu.Unlock()
	if o, ok := m.sets[key]; ok {
		return o
	}
	set := metric.WithAttributeSet(build())
	o = attrOpts{add: []metric.AddOption{set}, record: []metric.RecordOption{set}}
	m.sets[key] = o
	return o
}

// reasonOpt is the option of a reason label alone, whichever instrument
// it labels.
func (m *Metrics) reasonOpt(reason string) attrOpts {
	return m.opt(optKey{kind: optReason, a: reason}, func() attribute.Set { return attribute.NewSet(attribute.String("reason", reason)) })
}

// Consumed counts a polled record.
func (m *Metrics) Consumed(ctx context.Context, topic string, partition int32) {
	m.consumed.Add(ctx, 1, m.opt(optKey{kind: optConsumed, a: topic, n: int(partition)}, func() attribute.Set {
		return attribute.NewSet(attribute.String("topic", topic), attribute.Int("partition", int(partition)))
	}).add...)
}

// Settled counts settled records by outcome and reason.
func (m *Metrics) Settled(ctx context.Context, outcome, reason string, n int64) {
	m.settled.Add(ctx, n, m.opt(optKey{kind: optSettled, a: outcome, b: reason}, func() attribute.Set {
		return attribute.NewSet(attribute.String("outcome", outcome), attribute.String("reason", reason))
	}).add...)
}

func (m *Metrics) site(site string) attrOpts {
	return m.opt(optKey{kind: optSite, a: site}, func() attribute.Set { return attribute.NewSet(attribute.String("integration", site)) })
}

// Request records one collect attempt.
func (m *Metrics) Request(ctx context.Context, site string, status int, d time.Duration) {
	m.requests.Record(ctx, d.Seconds(), m.opt(optKey{kind: optRequest, a: site, n: status}, func() attribute.Set {
		return attribute.NewSet(attribute.String("integration", site), attribute.Int("http.response.status_code", status))
	}).record...)
}

func (m *Metrics) retryOpt(site, reason string) attrOpts {
	return m.opt(optKey{kind: optRetry, a: site, b: reason}, func() attribute.Set {
		return attribute.NewSet(attribute.String("integration", site), attribute.String("reason", reason))
	})
}

// Retry counts a retry.
func (m *Metrics) Retry(ctx context.Context, site, reason string) {
	m.retries.Add(ctx, 1, m.retryOpt(site, reason).add...)
}

// DeliveryLatency records the time from an event's creation to delivery.
func (m *Metrics) DeliveryLatency(ctx context.Context, site string, d time.Duration) {
	m.latency.Record(ctx, d.Seconds(), m.site(site).record...)
}

// Adjusted counts property values changed to fit Piano's limits, by
// reason: truncated (a string cut to 255 characters) or out_of_range (a
// decimal beyond ±1e15, left out of its hit).
func (m *Metrics) Adjusted(ctx context.Context, reason string, n int64) {
	m.adjusted.Add(ctx, n, m.reasonOpt(reason).add...)
}

// Abandoned counts records released unsettled (their partition moved to
// another member, or shutdown ran out of time), by reason.
func (m *Metrics) Abandoned(ctx context.Context, reason string, n int64) {
	m.abandoned.Add(ctx, n, m.reasonOpt(reason).add...)
}

// DLQWriteError counts a failed write to the dead-letter topic, by reason.
func (m *Metrics) DLQWriteError(ctx context.Context, reason string) {
	m.dlqErrors.Add(ctx, 1, m.reasonOpt(reason).add...)
}

func (m *Metrics) commitOpt(ok bool) attrOpts {
	result := "ok"
	if !ok {
		result = "error"
	}
	return m.opt(optKey{kind: optCommit, a: result}, func() attribute.Set { return attribute.NewSet(attribute.String("result", result)) })
}

// Commit counts an offset commit.
func (m *Metrics) Commit(ctx context.Context, ok bool) {
	m.commits.Add(ctx, 1, m.commitOpt(ok).add...)
}

// The kinds of Rebalance.
const (
	RebalanceAssigned = "assigned"
	RebalanceRevoked  = "revoked"
	RebalanceLost     = "lost"
)

// Rebalance counts a change of the member's partitions, by kind: assigned,
// revoked or lost (relay.RebalanceMetrics).
func (m *Metrics) Rebalance(ctx context.Context, kind string) {
	m.rebalances.Add(ctx, 1, m.opt(optKey{kind: optRebalance, a: kind}, func() attribute.Set { return attribute.NewSet(attribute.String("kind", kind)) }).add...)
}

// OffsetGap counts the records a partition's committed offset pointed to
// that retention deleted before the group read them, by topic; the relay
// adds 0 for every partition it checks, so that the series exists
// (relay.GapMetrics).
func (m *Metrics) OffsetGap(ctx context.Context, topic string, _ int32, missing int64) {
	m.offsetGap.Add(ctx, missing, m.opt(optKey{kind: optOffsetGap, a: topic}, func() attribute.Set { return attribute.NewSet(attribute.String("topic", topic)) }).add...)
}

// The reasons of SpansDropped.
const (
	DropQueueFull    = "queue_full"
	DropExportFailed = "export_failed"
)

// SpansDropped counts spans that were never exported, by reason.
func (m *Metrics) SpansDropped(ctx context.Context, reason string, n int64) {
	m.spansDropped.Add(ctx, n, m.reasonOpt(reason).add...)
}

// Bisected counts a request rejected with 400 that was bisected to isolate
// its rejected events, and the requests the bisection sent
// (relay.IsolationMetrics).
func (m *Metrics) Bisected(ctx context.Context, integration string, requests int64) {
	m.bisections.Add(ctx, 1, m.site(integration).add...)
	m.bisected.Add(ctx, requests, m.site(integration).add...)
}

// SitePaused records that an integration's site was paused by a reject
// storm of status, or resumed (relay.IsolationMetrics): the series of the
// integration and status is 1 while paused, 0 after.
func (m *Metrics) SitePaused(ctx context.Context, integration string, status int, paused bool) {
	n := int64(-1)
	if paused {
		n = 1
	}
	m.pausedSites.Add(ctx, n, m.opt(optKey{kind: optPaused, a: integration, n: status}, func() attribute.Set {
		return attribute.NewSet(attribute.String("integration", integration), attribute.Int("http.response.status_code", status))
	}).add...)
}

// SiteParking records that an integration's site started or stopped
// parking its records (relay.IsolationMetrics): its series is 1 while
// parking.
func (m *Metrics) SiteParking(ctx context.Context, integration string, parking bool) {
	n := int64(-1)
	if parking {
		n = 1
	}
	m.parkingSites.Add(ctx, n, m.site(integration).add...)
}

// Gauges are what the observable gauges read at each collection, for one
// consumer: the relay's, or its parking consumer's.
type Gauges struct {
	// Buffered returns how many records are between fetch and settlement.
	Buffered func() int64
	// Lag returns, per partition of Topic, the lag as last known: a
	// partition keeps its series, at its last value, while fetches fail.
	Lag func() map[int32]int64
	// Topic and Group label every lag series; Group also labels the
	// buffered series, so that the parking consumer's (group
	// <group>.park, on the parking topic) stand apart from the relay's.
	Topic, Group string
}

// ObserveGauges registers the buffered-records gauge (labelled with the
// consumer group) and the per-partition lag gauge (labelled with the
// topic, the consumer group and the partition), read from each of gs at
// each collection. Call it once, with every consumer.
func (m *Metrics) ObserveGauges(gs ...Gauges) error {
	b, err := m.meter.Int64ObservableGauge("atrelay.records.buffered", metric.WithUnit("{record}"),
		metric.WithDescription("Records between fetch and settlement, per consumer group (the relay's, and its parking consumer's)."))
	if err != nil {
		return err
	}
	l, err := m.meter.Int64ObservableGauge("atrelay.consumer.lag", metric.WithUnit("{record}"),
		metric.WithDescription("High watermark minus committed offset, per partition, as last known: a series keeps its last value while fetches fail."))
	if err != nil {
		return err
	}
	// The attributes are built once, not at each collection.
	type observed struct {
		Gauges
		topic, group attribute.KeyValue
		buffered     metric.ObserveOption
	}
	all := make([]observed, len(gs))
	for i, g := range gs {
		group := attribute.String("group", g.Group)
		all[i] = observed{Gauges: g, topic: attribute.String("topic", g.Topic), group: group, buffered: metric.WithAttributes(group)}
	}
	_, err = m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, g := range all {
			o.ObserveInt64(b, g.Buffered(), g.buffered)
			for p, v := range g.Lag() {
				o.ObserveInt64(l, v, metric.WithAttributes(g.topic, g.group, attribute.Int("partition", int(p))))
			}
		}
		return nil
	}, b, l)
	return err
}

// Health serves /healthz (the process runs) and /readyz: ready while the
// member owns at least one partition and, when LastContact is set, has had
// a successful fetch or group request within ReadyTimeout. Below its first
// line, /readyz lists what Detail returns, ready or not. Set the fields
// before serving; SetReady is safe for concurrent use.
type Health struct {
	// ReadyTimeout is how old LastContact may be; 0 checks ownership only.
	ReadyTimeout time.Duration
	// LastContact returns when the member last had a successful fetch or
	// group request (the zero time before any): relay.Relay.LastContact.
	LastContact func() time.Time
	// Detail, when set, returns lines that /readyz adds below its answer:
	// what an operator should see that is not a reason to restart the
	// member (a site paused by a reject storm, or parking its records:
	// relay.Relay.Sites). It must be safe for concurrent use.
	Detail func() []string

	ready atomic.Bool
}

// SetReady sets whether the member owns partitions (relay.Config.OnReady).
func (h *Health) SetReady(ready bool) { h.ready.Store(ready) }

// Ready reports readiness, and when not ready, why.
func (h *Health) Ready() (bool, string) {
	if !h.ready.Load() {
		return false, "the member owns no partition (joining the group, rebalancing, or shutting down)"
	}
	if h.ReadyTimeout > 0 && h.LastContact != nil {
		last := h.LastContact()
		if last.IsZero() {
			return false, "no successful fetch or heartbeat yet"
		}
		if since := time.Since(last); since > h.ReadyTimeout {
			return false, fmt.Sprintf("no successful fetch or heartbeat for %s (ready_timeout %s): Kafka is unreachable or not answering",
				since.Round(time.Second), h.ReadyTimeout)
		}
	}
	return true, ""
}

// Handler serves both endpoints. /readyz answers 200 "ready" or 503 "not
// ready: <why>", then one line per Detail line.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		ok, why := h.Ready()
		if ok {
			w.WriteHeader(http.StatusOK)
			fmt.Fprintln(w, "ready")
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: "+why)
		}
		if h.Detail != nil {
			for _, line := range h.Detail() {
				fmt.Fprintln(w, line)
			}
		}
	})
	return mux
}

// Server is an HTTP endpoint whose address is already bound. Listen binds
// it, so that a port in use fails the start before anything else runs;
// Serve then serves until its context ends.
type Server struct {
	ln  net.Listener // nil when off
	srv *http.Server
}

// Listen binds addr for h; an empty or "off" addr gives a Server that
// serves nothing. The error names the address.
func Listen(addr string, h http.Handler) (*Server, error) {
	if addr == "" || addr == Off {
		return &Server{}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return &Server{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr returns the bound address (with the port the system chose for
// ":0"), or "off".
func (s *Server) Addr() string {
	if s.ln == nil {
		return Off
	}
	return s.ln.Addr().String()
}

// Serve serves until ctx ends, then shuts down within 5 s. It returns nil
// after ctx ended, and the error that stopped it otherwise.
func (s *Server) Serve(ctx context.Context) error {
	if s.ln == nil {
		<-ctx.Done()
		return nil
	}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	})
	defer stop()
	if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s: %w", s.ln.Addr(), err)
	}
	return nil
}

// Close releases the address of a Server that was never served.
func (s *Server) Close() error {
	if s.ln == nil {
		return nil
	}
	return s.ln.Close()
}
