// Package telemetry wires OpenTelemetry metrics (exported for Prometheus),
// traces (exported over OTLP when configured) and the health endpoints,
// once, at the edges of the service.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
)

// Telemetry owns the meter provider and its Prometheus registry, and the
// tracer provider when traces are exported.
type Telemetry struct {
	Provider *sdkmetric.MeterProvider
	Metrics  *Metrics
	// Tracing is nil unless OTLP trace export is configured through the
	// standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables: without an
	// exporter, spans would cost CPU for nothing.
	Tracing  *sdktrace.TracerProvider
	registry *prometheus.Registry
}

// Setup builds the meter provider with a Prometheus exporter on a registry
// of its own (no global state).
func Setup(serviceName, version string) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(serviceName), semconv.ServiceVersion(version))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp), sdkmetric.WithResource(res))
	m, err := NewMetrics(mp)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{Provider: mp, Metrics: m, registry: reg}
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "" {
		// The exporter reads the other OTEL_EXPORTER_OTLP_* variables itself.
		exp, err := otlptracehttp.New(context.Background())
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp trace exporter: %w", err)
		}
		t.Tracing = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	}
	return t, nil
}

// Handler serves /metrics.
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{})
}

// Shutdown flushes the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	err := t.Provider.Shutdown(ctx)
	if t.Tracing != nil {
		err = errors.Join(err, t.Tracing.Shutdown(ctx))
	}
	return err
}

// Metrics are atrelay's instruments. The methods are safe for concurrent use
// and, once an attribute set was seen, allocate nothing.
type Metrics struct {
	consumed  metric.Int64Counter
	settled   metric.Int64Counter
	batch     metric.Int64Histogram
	requests  metric.Float64Histogram
	retries   metric.Int64Counter
	latency   metric.Float64Histogram
	adjusted  metric.Int64Counter
	commits   metric.Int64Counter
	abandoned metric.Int64Counter
	dlqErrors metric.Int64Counter
	meter     metric.Meter

	sets sync.Map // string key -> metric.MeasurementOption
}

// NewMetrics creates the instruments on a meter provider.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	m := &Metrics{meter: mp.Meter("github.com/atrelay/atrelay")}
	var errs []error
	add := func(err error) { errs = append(errs, err) }
	var err error
	m.consumed, err = m.meter.Int64Counter("atrelay.records.consumed", metric.WithUnit("{record}"), metric.WithDescription("Records polled from Kafka."))
	add(err)
	m.settled, err = m.meter.Int64Counter("atrelay.records.settled", metric.WithUnit("{record}"), metric.WithDescription("Records settled, by outcome (delivered, filtered, dlq) and reason."))
	add(err)
	m.batch, err = m.meter.Int64Histogram("atrelay.batch.size", metric.WithUnit("{hit}"), metric.WithDescription("Hits per flushed site batch."),
		metric.WithExplicitBucketBoundaries(1, 5, 10, 50, 100, 250, 500, 1000))
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
	m.commits, err = m.meter.Int64Counter("atrelay.offsets.commits", metric.WithUnit("{commit}"), metric.WithDescription("Offset commits, by result."))
	add(err)
	return m, errors.Join(errs...)
}

// opt returns the cached attribute option for a key, building it once.
func (m *Metrics) opt(key string, build func() attribute.Set) metric.MeasurementOption {
	if o, ok := m.sets.Load(key); ok {
		return o.(metric.MeasurementOption)
	}
	o, _ := m.sets.LoadOrStore(key, metric.WithAttributeSet(build()))
	return o.(metric.MeasurementOption)
}

// Consumed counts a polled record.
func (m *Metrics) Consumed(ctx context.Context, topic string, partition int32) {
	m.consumed.Add(ctx, 1, m.opt("c/"+topic+"/"+strconv.Itoa(int(partition)), func() attribute.Set {
		return attribute.NewSet(attribute.String("messaging.destination.name", topic), attribute.Int("messaging.destination.partition.id", int(partition)))
	}))
}

// Settled counts settled records by outcome and reason.
func (m *Metrics) Settled(ctx context.Context, outcome, reason string, n int64) {
	m.settled.Add(ctx, n, m.opt("s/"+outcome+"/"+reason, func() attribute.Set {
		return attribute.NewSet(attribute.String("outcome", outcome), attribute.String("reason", reason))
	}))
}

func (m *Metrics) site(site string) metric.MeasurementOption {
	return m.opt("site/"+site, func() attribute.Set { return attribute.NewSet(attribute.String("integration", site)) })
}

// BatchSize records a flushed batch.
func (m *Metrics) BatchSize(ctx context.Context, site string, n int) {
	m.batch.Record(ctx, int64(n), m.site(site))
}

// Request records one collect attempt.
func (m *Metrics) Request(ctx context.Context, site string, status int, d time.Duration) {
	m.requests.Record(ctx, d.Seconds(), m.opt("r/"+site+"/"+strconv.Itoa(status), func() attribute.Set {
		return attribute.NewSet(attribute.String("integration", site), attribute.Int("http.response.status_code", status))
	}))
}

// Retry counts a retry.
func (m *Metrics) Retry(ctx context.Context, site, reason string) {
	m.retries.Add(ctx, 1, m.opt("retry/"+site+"/"+reason, func() attribute.Set {
		return attribute.NewSet(attribute.String("integration", site), attribute.String("reason", reason))
	}))
}

// DeliveryLatency records the time from an event's creation to delivery.
func (m *Metrics) DeliveryLatency(ctx context.Context, site string, d time.Duration) {
	m.latency.Record(ctx, d.Seconds(), m.site(site))
}

// Adjusted counts property values changed to fit Piano's limits, by
// reason: truncated (a string cut to 255 characters) or out_of_range (a
// decimal beyond ±1e15, left out of its hit).
func (m *Metrics) Adjusted(ctx context.Context, reason string, n int64) {
	m.adjusted.Add(ctx, n, m.opt("adjusted/"+reason, func() attribute.Set { return attribute.NewSet(attribute.String("reason", reason)) }))
}

// Abandoned counts records released unsettled (their partition moved to
// another member, or shutdown ran out of time), by reason.
func (m *Metrics) Abandoned(ctx context.Context, reason string, n int64) {
	m.abandoned.Add(ctx, n, m.opt("abandoned/"+reason, func() attribute.Set { return attribute.NewSet(attribute.String("reason", reason)) }))
}

// DLQWriteError counts a failed write to the dead-letter topic, by reason.
func (m *Metrics) DLQWriteError(ctx context.Context, reason string) {
	m.dlqErrors.Add(ctx, 1, m.opt("dlqerr/"+reason, func() attribute.Set { return attribute.NewSet(attribute.String("reason", reason)) }))
}

// Commit counts an offset commit.
func (m *Metrics) Commit(ctx context.Context, ok bool) {
	result := "ok"
	if !ok {
		result = "error"
	}
	m.commits.Add(ctx, 1, m.opt("commit/"+result, func() attribute.Set { return attribute.NewSet(attribute.String("result", result)) }))
}

// Gauges are what the observable gauges read at each collection.
type Gauges struct {
	// Buffered returns how many records are between fetch and settlement.
	Buffered func() int64
	// Lag returns, per partition of Topic, the lag as last known: a
	// partition keeps its series, at its last value, while fetches fail.
	Lag func() map[int32]int64
	// Topic and Group label every lag series.
	Topic, Group string
}

// ObserveGauges registers the buffered-records gauge and the per-partition
// lag gauge (labelled with the topic, the consumer group and the
// partition), read from g at each collection.
func (m *Metrics) ObserveGauges(g Gauges) error {
	b, err := m.meter.Int64ObservableGauge("atrelay.records.buffered", metric.WithUnit("{record}"), metric.WithDescription("Records between fetch and settlement."))
	if err != nil {
		return err
	}
	l, err := m.meter.Int64ObservableGauge("atrelay.consumer.lag", metric.WithUnit("{record}"),
		metric.WithDescription("High watermark minus committed offset, per partition, as last known: a series keeps its last value while fetches fail."))
	if err != nil {
		return err
	}
	topic, group := attribute.String("messaging.destination.name", g.Topic), attribute.String("messaging.consumer.group.name", g.Group)
	_, err = m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(b, g.Buffered())
		for p, v := range g.Lag() {
			o.ObserveInt64(l, v, metric.WithAttributes(topic, group, attribute.Int("messaging.destination.partition.id", int(p))))
		}
		return nil
	}, b, l)
	return err
}

// Health serves /healthz (the process runs) and /readyz: ready while the
// member owns at least one partition and, when LastContact is set, has had
// a successful fetch or group request within ReadyTimeout. Set the fields
// before serving; SetReady is safe for concurrent use.
type Health struct {
	// ReadyTimeout is how old LastContact may be; 0 checks ownership only.
	ReadyTimeout time.Duration
	// LastContact returns when the member last had a successful fetch or
	// group request (the zero time before any): relay.Relay.LastContact.
	LastContact func() time.Time

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

// Handler serves both endpoints.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := h.Ready(); !ok {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
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
