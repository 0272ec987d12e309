package monitoring

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/internal/telemetry"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/internal/testotlp"
	"github.com/atrelay/atrelay/schemas"
)

// live is what one run of the service left to check: its last /metrics
// scrape, the spans it exported, and the events it was given.
type live struct {
	exposition string
	spans      *spanSink
	events     []codec.Event
}

// runService runs `atrelay run` (app.Serve) in-process against kfake, srfake
// and the sandbox collector, on three integrations (one disabled), with:
// events of every app (delivered, and filtered for several reasons), one
// corrupt record (dead-lettered), a collector whose first answer is a 503
// (a retry) and whose second is a 404 (its site paused, until its next
// probe is accepted), and a parking topic, as in production. It scrapes
// /metrics, as Prometheus would, until every record is settled, the lag and
// a commit are reported and the series of the dead letter, the retry and
// the pause exist; then it stops the service, which flushes its spans to an
// OTLP/HTTP endpoint of the test's. (The parking consumer's lag has no
// series until a record is parked: its labels are the relay's.)
func runService(t *testing.T) *live {
	t.Helper()
	kafka := testkafka.New(t)
	topic, group := kafka.Name(t, "events"), kafka.Name(t, "group")
	kafka.CreateTopic(t, topic, 2)
	kafka.CreateTopic(t, topic+".dlq", 1)
	kafka.CreateTopic(t, topic+".park", 1) // kafka.park_topic's default: the parking consumer runs
	const schemaID = 1
	reg := srfake.New()
	t.Cleanup(reg.Close)
	reg.SeedSchema(topic+"-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	collector := sandbox.New()
	collect := httptest.NewServer(collector)
	t.Cleanup(collect.Close)
	collector.FailNext(1, http.StatusServiceUnavailable, "")
	collector.FailNext(1, http.StatusNotFound, "")

	events := fixture.Generate(fixture.Options{Seed: 11, Events: 60, EventsPerVisitor: 2})
	enc := fixture.MustEncoder("")
	var recs []*kgo.Record
	for i := range events {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i/2) % 2, Key: []byte(events[i].AnonymousUserID),
			Value: enc.Confluent(schemaID, &events[i])})
	}
	recs = append(recs, &kgo.Record{Topic: topic, Partition: 1, Value: enc.Corrupt(fixture.CorruptGarbage, &events[0])})
	kafka.Produce(t, recs...)

	spans := newSpanSink(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", spans.srv.URL+"/v1/traces")
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"} {
		t.Setenv(v, "")
	}

	cfg := &config.Config{
		Kafka:        kafkaconn.Config{Brokers: kafka.Brokers(), Topic: topic, Group: group},
		Codec:        codec.Config{SchemaRegistry: codec.SchemaRegistry{URL: reg.URL()}},
		Integrations: fixture.Integrations(collect.URL),
		Telemetry:    telemetry.Config{MetricsListen: "127.0.0.1:0", HealthListen: "127.0.0.1:0", ReadyTimeout: telemetry.MinReadyTimeout},
	}
	d := &cfg.Delivery
	d.Batch.Linger = 20 * time.Millisecond
	d.Relay.Backoff.Min, d.Relay.Backoff.Max = 5*time.Millisecond, 100*time.Millisecond
	d.Relay.CommitInterval = 50 * time.Millisecond
	d.Relay.ShutdownTimeout = 2 * time.Second
	d.Relay.RejectProbeInterval = 20 * time.Millisecond // the 404's pause ends at once
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	logs := &startLine{addr: make(chan string, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Serve(ctx, cfg, slog.New(logs)) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve = %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("Serve did not return within 60 s of its cancellation")
		}
	}
	t.Cleanup(stop)

	var addr string
	select {
	case addr = <-logs.addr:
	case err := <-done:
		t.Fatalf("Serve returned before starting: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal(`no "atrelay starting" line within 30 s`)
	}
	url := "http://" + addr + "/metrics"

	// Scrape every 100 ms, as a (fast) Prometheus would, until the run has
	// shown every series the checks need.
	want := len(recs)
	var text, missing string
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		text = scrape(t, url)
		missing = notYet(t, text, want)
		if missing == "" {
			break
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("after 60 s, /metrics still lacks %s\n%s\nerror log lines:\n%s", missing, text, logs.errors())
		}
	}
	stop()
	return &live{exposition: text, spans: spans, events: events}
}

// notYet returns what the scrape does not show yet, or "".
func notYet(t *testing.T, text string, records int) string {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, text)
	}
	sum := func(name string, match map[string]string) (float64, bool) {
		f, ok := fams[name]
		if !ok {
			return 0, false
		}
		var total float64
		found := false
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if have[k] != v {
					continue metrics
				}
			}
			found = true
			total += value(m)
		}
		return total, found
	}
	if n, _ := sum("atrelay_records_settled_total", nil); n < float64(records) {
		return fmt.Sprintf("%d settled records (has %v)", records, n)
	}
	for _, c := range []struct {
		name  string
		match map[string]string
	}{
		{"atrelay_records_settled_total", map[string]string{"outcome": "dlq", "reason": "corrupt"}},
		{"atrelay_records_settled_total", map[string]string{"outcome": "delivered"}},
		{"atrelay_http_client_retries_total", map[string]string{"reason": "http_503"}},
		{"atrelay_offsets_commits_total", map[string]string{"result": "ok"}},
		{"atrelay_delivery_latency_seconds", nil},
		{"messaging_kafka_produce_bytes_total", nil},
	} {
		if n, _ := sum(c.name, c.match); n < 1 {
			return fmt.Sprintf("%s%v at 1 or more", c.name, c.match)
		}
	}
	if _, ok := sum("atrelay_consumer_lag", nil); !ok {
		return "atrelay_consumer_lag"
	}
	// A pause's series exists from the pause on, at 0 again once the
	// probe was accepted.
	if _, ok := sum("atrelay_sites_paused", map[string]string{"http_response_status_code": "404"}); !ok {
		return `atrelay_sites_paused{http_response_status_code="404"}`
	}
	return ""
}

// value is a sample's value: a counter's or gauge's, a histogram's count.
func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// startLine is a slog handler that hands over the metrics address of the
// "atrelay starting" line and keeps the error lines.
type startLine struct {
	addr chan string
	mu   sync.Mutex
	errs []string
}

func (h *startLine) Enabled(context.Context, slog.Level) bool { return true }
func (h *startLine) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *startLine) WithGroup(string) slog.Handler            { return h }
func (h *startLine) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "atrelay starting" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "metrics" {
				select {
				case h.addr <- a.Value.String():
				default:
				}
			}
			return true
		})
	}
	if r.Level >= slog.LevelWarn {
		var b strings.Builder
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		h.mu.Lock()
		h.errs = append(h.errs, b.String())
		h.mu.Unlock()
	}
	return nil
}

func (h *startLine) errors() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.errs, "\n")
}

// spanSink is an OTLP/HTTP trace endpoint on 127.0.0.1: it decodes what
// the exporter sends, as a collector would, and keeps each span's
// service.name and string attributes.
type spanSink struct {
	srv *httptest.Server

	mu    sync.Mutex
	spans []exportedSpan
}

type exportedSpan struct {
	service, name string
	attrs         map[string]string
}

func newSpanSink(t *testing.T) *spanSink {
	s := &spanSink{}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *spanSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req coltracepb.ExportTraceServiceRequest
	if !testotlp.Decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				e := exportedSpan{service: service, name: sp.GetName(), attrs: map[string]string{}}
				for _, a := range sp.GetAttributes() {
					e.attrs[a.GetKey()] = a.GetValue().GetStringValue()
				}
				s.spans = append(s.spans, e)
			}
		}
	}
	s.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = io.Copy(w, bytes.NewReader(out))
}

// withAttr returns the spans whose attribute key is value.
func (s *spanSink) withAttr(key, value string) []exportedSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []exportedSpan
	for _, sp := range s.spans {
		if sp.attrs[key] == value {
			out = append(out, sp)
		}
	}
	return out
}

func (s *spanSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.spans)
}
