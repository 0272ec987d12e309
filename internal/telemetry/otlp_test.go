package telemetry_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/atrelay/atrelay/internal/telemetry"
	"github.com/atrelay/atrelay/internal/testotlp"
)

// collector is an OTLP/HTTP endpoint (protobuf) on 127.0.0.1: it decodes
// what the exporters send, as a real collector would.
type collector struct {
	srv *httptest.Server

	mu      sync.Mutex
	spans   int                         // spans received
	metrics []*metricpb.ResourceMetrics // every export, in order

	// hold, while open, keeps trace requests waiting: an endpoint that does
	// not keep up.
	hold chan struct{}
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{hold: make(chan struct{})}
	close(c.hold)
	c.srv = httptest.NewServer(c)
	t.Cleanup(c.srv.Close)
	return c
}

// holdTraces makes trace requests wait until the returned func is called.
func (c *collector) holdTraces() (release func()) {
	c.mu.Lock()
	c.hold = make(chan struct{})
	hold := c.hold
	c.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(hold) }) }
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var resp proto.Message
	switch r.URL.Path {
	case "/v1/traces":
		c.mu.Lock()
		hold := c.hold
		c.mu.Unlock()
		<-hold
		var req coltracepb.ExportTraceServiceRequest
		if !testotlp.Decode(w, r, &req) {
			return
		}
		c.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				c.spans += len(ss.Spans)
			}
		}
		c.mu.Unlock()
		resp = &coltracepb.ExportTraceServiceResponse{}
	case "/v1/metrics":
		var req colmetricpb.ExportMetricsServiceRequest
		if !testotlp.Decode(w, r, &req) {
			return
		}
		c.mu.Lock()
		c.metrics = append(c.metrics, req.ResourceMetrics...)
		c.mu.Unlock()
		resp = &colmetricpb.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, r)
		return
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *collector) spanCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.spans
}

// sum returns, from the last metric export, the value of the counter name's
// data point whose attributes include attrs, and whether there is one.
func (c *collector) sum(name string, attrs map[string]string) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.metrics) == 0 {
		return 0, false
	}
	for _, sm := range c.metrics[len(c.metrics)-1].ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name || m.GetSum() == nil {
				continue
			}
			for _, dp := range m.GetSum().DataPoints {
				if hasAttrs(dp.Attributes, attrs) {
					return dp.GetAsInt(), true
				}
			}
		}
	}
	return 0, false
}

func hasAttrs(kvs []*commonpb.KeyValue, want map[string]string) bool {
	n := 0
	for _, kv := range kvs {
		if v, ok := want[kv.Key]; ok && kv.Value.GetStringValue() == v {
			n++
		}
	}
	return n == len(want)
}

// syncBuffer is a log destination safe for concurrent writes.
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

// promValue returns the value of the exposition line starting with series.
func promValue(t *testing.T, text, series string) float64 {
	t.Helper()
	for l := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return v
		}
	}
	t.Fatalf("no series %s in:\n%s", series, text)
	return 0
}

// TestDroppedSpansAreCounted: with a span queue of 4 (OTEL_BSP_MAX_QUEUE_SIZE)
// and an OTLP endpoint that holds every trace request, ending 3,000 spans
// overflows the queue. Every span is then either received by the endpoint
// (once released, and flushed) or counted in
// atrelay_telemetry_spans_dropped_total{reason="queue_full"}; the drops
// are logged once at the first, then summed in the next line (the
// summary or the recovery), never a line per span.
// Mutations caught (each tried once): the drop not counted in OnEnd, and
// the SDK's batch processor used alone, as before (its drops are silent):
// 0 counted, not even the 1,459 that cannot have fit; a log line per drop
// (failurelog's period 0: a summary line per drop).
func TestDroppedSpansAreCounted(t *testing.T) {
	c := newCollector(t)
	release := c.holdTraces()
	defer release()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", c.srv.URL)
	t.Setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
	logs := new(syncBuffer)
	tel, err := telemetry.Setup(telemetry.Options{ServiceName: "atrelay", Version: "test", MaxBufferedEvents: 1000,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Tracing == nil {
		t.Fatal("OTEL_EXPORTER_OTLP_ENDPOINT set, and no tracer provider")
	}
	const n = 3000
	tracer := tel.Tracing.Tracer("test")
	for range n {
		_, span := tracer.Start(context.Background(), "record")
		span.End()
	}
	// While the endpoint holds the first export, at most 4 (queue) + 1 (in
	// hand) + 1,024 (the batch processor's queue) + 512 (the batch being
	// exported) spans can wait: the rest was dropped.
	dropped := promValue(t, scrape(t, tel), `atrelay_telemetry_spans_dropped_total{reason="queue_full"}`)
	if dropped < n-(4+1+1024+512) {
		t.Fatalf("%v spans counted as dropped, want at least %d", dropped, n-(4+1+1024+512))
	}
	release()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tel.Tracing.ForceFlush(ctx); err != nil {
		t.Fatal(err)
	}
	text := scrape(t, tel)
	dropped = promValue(t, text, `atrelay_telemetry_spans_dropped_total{reason="queue_full"}`)
	if failed := promValue(t, text, `atrelay_telemetry_spans_dropped_total{reason="export_failed"}`); failed != 0 {
		t.Errorf("%v spans counted as failed exports, want 0", failed)
	}
	if got := c.spanCount() + int(dropped); got != n {
		t.Errorf("received %d spans, %v counted as dropped: %d accounted for, want %d", c.spanCount(), dropped, got, n)
	}
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if first, lines := strings.Count(out, `msg="span export failed"`), strings.Count(out, "\n"); first != 1 || lines > 2 {
		t.Errorf("%d first lines in %d lines, want 1 in at most 2 (first, then summary or recovery):\n%s", first, lines, out)
	}
	logged := 0
	for _, m := range regexp.MustCompile(`\bfailures=(\d+)`).FindAllStringSubmatch(out, -1) {
		k, _ := strconv.Atoi(m[1])
		logged += k
	}
	if logged != int(dropped) || !strings.Contains(out, "reason=queue_full queue_size=4") {
		t.Errorf("the lines report %d drops, want %v, with the reason and the queue size:\n%s", logged, dropped, out)
	}
}

// TestOTLPMetrics: with only OTEL_EXPORTER_OTLP_METRICS_ENDPOINT set, the
// metrics are pushed over OTLP/HTTP besides /metrics (Shutdown sends the
// last export), with the counters known at start at 0 and the service's
// name on the resource; traces stay off.
// Mutations caught: the periodic OTLP reader left out (nothing received);
// only OTEL_EXPORTER_OTLP_ENDPOINT looked at (nothing received).
func TestOTLPMetrics(t *testing.T) {
	c := newCollector(t)
	t.Setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", c.srv.URL+"/v1/metrics")
	tel, err := telemetry.Setup(telemetry.Options{ServiceName: "atrelay-eu", Version: "test", Integrations: []string{"fitness"}})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Tracing != nil || !tel.OTLPMetrics {
		t.Fatalf("tracing %v, OTLP metrics %v; want no tracing, OTLP metrics", tel.Tracing != nil, tel.OTLPMetrics)
	}
	tel.Metrics.Settled(context.Background(), "delivered", "", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		attrs map[string]string
		want  int64
	}{
		{"atrelay.records.settled", map[string]string{"outcome": "delivered", "reason": ""}, 5},
		{"atrelay.records.settled", map[string]string{"outcome": "filtered", "reason": "no_idclient"}, 0},
		{"atrelay.http.client.retries", map[string]string{"integration": "fitness", "reason": "connection_refused"}, 0},
	} {
		if got, ok := c.sum(tt.name, tt.attrs); !ok || got != tt.want {
			t.Errorf("%s%v = %d (present: %v), want %d", tt.name, tt.attrs, got, ok, tt.want)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.metrics) == 0 {
		t.Fatal("no metric export received")
	}
	if !hasAttrs(c.metrics[0].Resource.Attributes, map[string]string{"service.name": "atrelay-eu"}) {
		t.Errorf("resource %v lacks service.name atrelay-eu", c.metrics[0].Resource.Attributes)
	}
}
