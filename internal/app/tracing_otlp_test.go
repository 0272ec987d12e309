package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/testotlp"
)

// otlpSpan is a span as an OTLP/HTTP receiver decodes it.
type otlpSpan struct {
	traceID, spanID, parentID string // hex
	name                      string
	kind                      tracepb.Span_SpanKind
	attrs                     map[string]*commonpb.AnyValue
	links                     []string // span ids, hex
	error                     bool
	start, end                uint64
	resource                  map[string]string
}

func (s *otlpSpan) str(key string) string { return s.attrs[key].GetStringValue() }
func (s *otlpSpan) int(key string) (int64, bool) {
	v, ok := s.attrs[key]
	return v.GetIntValue(), ok
}

// otlpReceiver is an OTLP/HTTP trace endpoint (protobuf) on 127.0.0.1 that
// keeps every span it is sent, decoded as a collector would.
type otlpReceiver struct {
	srv *httptest.Server

	mu    sync.Mutex
	spans []*otlpSpan
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rcv := &otlpReceiver{}
	rcv.srv = httptest.NewServer(rcv)
	t.Cleanup(rcv.srv.Close)
	return rcv
}

func (rcv *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if !testotlp.Decode(w, r, &req) {
		return
	}
	var got []*otlpSpan
	for _, rs := range req.ResourceSpans {
		res := map[string]string{}
		for _, kv := range rs.Resource.GetAttributes() {
			res[kv.Key] = kv.Value.GetStringValue()
		}
		for _, ss := range rs.ScopeSpans {
			for _, sp := range ss.Spans {
				s := &otlpSpan{traceID: hex.EncodeToString(sp.TraceId), spanID: hex.EncodeToString(sp.SpanId), parentID: hex.EncodeToString(sp.ParentSpanId),
					name: sp.Name, kind: sp.Kind, attrs: map[string]*commonpb.AnyValue{}, error: sp.Status.GetCode() == tracepb.Status_STATUS_CODE_ERROR,
					start: sp.StartTimeUnixNano, end: sp.EndTimeUnixNano, resource: res}
				for _, kv := range sp.Attributes {
					s.attrs[kv.Key] = kv.Value
				}
				for _, l := range sp.Links {
					s.links = append(s.links, hex.EncodeToString(l.SpanId))
				}
				got = append(got, s)
			}
		}
	}
	rcv.mu.Lock()
	rcv.spans = append(rcv.spans, got...)
	rcv.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (rcv *otlpReceiver) all() []*otlpSpan {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	return append([]*otlpSpan(nil), rcv.spans...)
}

// flaky answers 503 to the first two arrivals of the first request body it
// sees (one request and its retries: retries send the same body), then
// passes every request to next.
type flaky struct {
	next http.Handler

	mu     sync.Mutex
	target string // the first body's hash
	seen   int
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(b)
	h := string(sum[:])
	f.mu.Lock()
	if f.target == "" {
		f.target = h
	}
	fail := h == f.target && f.seen < 2
	if h == f.target {
		f.seen++
	}
	f.mu.Unlock()
	if fail {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	f.next.ServeHTTP(w, r)
}

// TestTracesOverOTLP is the tracing acceptance test: `atrelay run` (Serve)
// exports over OTLP/HTTP, to a receiver here, the traces of a replay of
// 5,000 events and 3 corrupt records on kfake, with a collector that
// answers the first request 503 twice, then 204. It finds:
//   - one process span per record, 0 missing and none twice, with the
//     messaging attributes of the current semantic conventions (system,
//     operation type and name, destination, partition id, offset, consumer
//     group), atrelay.event_id, atrelay.integration, the outcome and the
//     reason, and no messaging.kafka.message.key (record_message_key is
//     off); the three dead-lettered ones are errors, each the parent of
//     its DLQ send span;
//   - one receive span per record, the process span's parent, and itself
//     the child of the record's traceparent when it has one;
//   - a request span per request, with its attempt spans as children,
//     url.full without the query (no idclient), server.address and
//     server.port; links both ways: each request span links to the process
//     span of each of its records, and each delivered record's span links
//     to the request span that delivered it;
//   - the first request's three attempt spans: 503, 503, 204, with
//     http.request.resend_count absent, 1, 2;
//   - the resource named by OTEL_SERVICE_NAME (over the configuration's
//     service_name and OTEL_RESOURCE_ATTRIBUTES' service.name), with
//     OTEL_RESOURCE_ATTRIBUTES' other attributes.
//
// Mutations caught (each applied once, seen failing, reverted): the
// consumer group left out of the consumer spans' attributes (every
// process span lacks it); the sink not telling the records of the request
// (LinkRequest not called: no record links to its request); the resource
// without resource.WithFromEnv (service.name "atrelay"); attemptTransport
// not replacing url.full (the idclient is in it); the resend count as
// attempt+1 (1, 2, 3); a dead-lettered record's span not marked an error;
// the key recorded whatever record_message_key says.
func TestTracesOverOTLP(t *testing.T) {
	const partitions, n, corrupt = 4, 5000, 3
	rcv := newOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rcv.srv.URL+"/v1/traces")
	t.Setenv("OTEL_SERVICE_NAME", "atrelay-eu")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test,service.name=from-attributes")
	w := newWorld(t, partitions, 0)
	collect := httptest.NewServer(&flaky{next: w.collector})
	t.Cleanup(collect.Close)
	cfg := w.config(30 * time.Second)
	cfg.Integrations = fixture.Integrations(collect.URL)[1:2]
	// The span queue (telemetry.SpansPerRecord per buffered record) then
	// holds every span of the run: none is dropped.
	cfg.Delivery.Relay.MaxBufferedEvents = n
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	// The records: n events, keyed and partitioned by visitor, every 100th
	// with a traceparent, and corrupt records in between.
	w.events = fixture.Generate(fixture.Options{Seed: 17, Events: n, EventsPerVisitor: 20, Apps: []string{fixture.AppNews}})
	enc := fixture.MustEncoder("")
	recs := make([]*kgo.Record, 0, n+corrupt)
	parents := map[int]string{} // index in recs -> traceparent
	eventOf := map[int]string{} // index in recs -> event id
	for i := range w.events {
		ev := &w.events[i]
		h := fnv.New32a()
		h.Write([]byte(ev.AnonymousUserID))
		p := int32(h.Sum32() % partitions)
		rec := &kgo.Record{Topic: w.topic, Partition: p, Key: []byte(ev.AnonymousUserID), Value: enc.Confluent(schemaID, ev)}
		if i%100 == 0 {
			tp := fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)
			rec.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte(tp)}}
			parents[len(recs)] = tp
		}
		eventOf[len(recs)] = ev.EventID
		recs = append(recs, rec)
		if i%(n/corrupt) == n/(2*corrupt) {
			recs = append(recs, &kgo.Record{Topic: w.topic, Partition: p, Key: []byte(ev.AnonymousUserID), Value: enc.Corrupt(fixture.CorruptGarbage, ev)})
		}
	}
	if len(recs) != n+corrupt {
		t.Fatalf("%d records, want %d", len(recs), n+corrupt)
	}
	w.kafka.Produce(t, recs...)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := serve(t, cfg)
	w.waitDelivered(ctx)
	w.kafka.ReadAll(t, w.topic+".dlq", corrupt)
	// Shutdown settles what is in flight, then flushes the spans.
	r.stop(t, 30*time.Second)

	spans := rcv.all()
	byID := map[string]*otlpSpan{}
	type po struct {
		p int32
		o int64
	}
	process, poll := map[po]*otlpSpan{}, map[po]*otlpSpan{}
	var collects, sends []*otlpSpan
	attempts := map[string][]*otlpSpan{} // request span id -> its attempts
	for _, s := range spans {
		if byID[s.spanID] != nil {
			t.Fatalf("span %s received twice", s.spanID)
		}
		byID[s.spanID] = s
		if _, ok := s.attrs["messaging.kafka.message.key"]; ok {
			t.Errorf("span %q records the message key: record_message_key is off", s.name)
		}
		if s.resource["service.name"] != "atrelay-eu" || s.resource["deployment.environment.name"] != "test" {
			t.Fatalf("resource %v: want service.name atrelay-eu (OTEL_SERVICE_NAME), deployment.environment.name test", s.resource)
		}
		pid, _ := strconv.Atoi(s.str("messaging.destination.partition.id"))
		off, _ := s.int("messaging.kafka.offset")
		key := po{int32(pid), off}
		switch s.name {
		case "process " + w.topic:
			if process[key] != nil {
				t.Errorf("record %v has two process spans", key)
			}
			process[key] = s
		case "poll " + w.topic:
			poll[key] = s
		case "collect news":
			collects = append(collects, s)
		case "POST":
			attempts[s.parentID] = append(attempts[s.parentID], s)
		case "send " + w.topic + ".dlq":
			sends = append(sends, s)
		default:
			t.Errorf("unexpected span %q", s.name)
		}
	}

	// One process span per record, with the attributes of the conventions.
	offsets := map[int32]int64{}
	delivered, dlq := 0, 0
	for i, rec := range recs {
		key := po{rec.Partition, offsets[rec.Partition]}
		offsets[rec.Partition]++
		s := process[key]
		if s == nil {
			t.Errorf("record %v (%d of %d) has no process span", key, i, len(recs))
			continue
		}
		want := map[string]string{"messaging.system": "kafka", "messaging.operation.type": "process", "messaging.operation.name": "process",
			"messaging.destination.name": w.topic, "messaging.consumer.group.name": w.group}
		id, isEvent := eventOf[i]
		if isEvent {
			want["atrelay.event_id"], want["atrelay.integration"], want["atrelay.outcome"] = id, "news", "delivered"
		} else {
			want["atrelay.outcome"], want["atrelay.reason"], want["error.type"] = "dlq", "corrupt", "corrupt"
		}
		for k, v := range want {
			if got := s.str(k); got != v {
				t.Errorf("record %v: process span %s = %q, want %q", key, k, got, v)
			}
		}
		if s.kind != tracepb.Span_SPAN_KIND_CONSUMER || s.error == isEvent {
			t.Errorf("record %v: process span kind %v, error %v", key, s.kind, s.error)
		}
		// Its receive span is its parent, in the record's trace.
		rs := poll[key]
		if rs == nil || s.parentID != rs.spanID || rs.kind != tracepb.Span_SPAN_KIND_CLIENT || rs.str("messaging.operation.type") != "receive" ||
			rs.str("messaging.consumer.group.name") != w.group {
			t.Errorf("record %v: receive span %+v is not the process span's parent", key, rs)
		} else if tp, ok := parents[i]; ok {
			f := strings.Split(tp, "-")
			if rs.traceID != f[1] || rs.parentID != f[2] || s.traceID != f[1] {
				t.Errorf("record %v with traceparent %s: receive span in trace %s under %s, process span in %s", key, tp, rs.traceID, rs.parentID, s.traceID)
			}
		}
		if !isEvent {
			dlq++
			continue
		}
		// A link to the request span that delivered it, which links back.
		var by *otlpSpan
		for _, l := range s.links {
			if c := byID[l]; c != nil && c.name == "collect news" && c.str("atrelay.outcome") == "delivered" {
				by = c
			}
		}
		if by == nil {
			t.Errorf("record %v: process span links %v, none to a request span that delivered it", key, s.links)
			continue
		}
		delivered++
		if !contains(by.links, s.spanID) {
			t.Errorf("record %v: its request span %s does not link back to it", key, by.spanID)
		}
	}
	if delivered != n || dlq != corrupt || len(process) != n+corrupt || len(poll) != n+corrupt {
		t.Errorf("%d process spans (%d delivered, %d dead-lettered) and %d receive spans, want %d, %d, %d and %d",
			len(process), delivered, dlq, len(poll), n+corrupt, n, corrupt, n+corrupt)
	}
	for _, s := range sends {
		if p := byID[s.parentID]; p == nil || p.str("atrelay.outcome") != "dlq" {
			t.Errorf("DLQ send span's parent %v is not a dead-lettered record's process span", s.parentID)
		}
	}
	if len(sends) != corrupt {
		t.Errorf("%d DLQ send spans, want %d", len(sends), corrupt)
	}

	// Every request span: its links lead to process spans, its attempts
	// are its children; the first request was answered 503, 503, 204.
	retried := 0
	for _, c := range collects {
		for _, l := range c.links {
			if p := byID[l]; p == nil || !strings.HasPrefix(p.name, "process ") {
				t.Errorf("request span %s links to %s, not a process span", c.spanID, l)
			}
		}
		if ev, _ := c.int("atrelay.events"); int(ev) != len(c.links) {
			t.Errorf("request span %s: %d events, %d links", c.spanID, ev, len(c.links))
		}
		as := attempts[c.spanID]
		if len(as) == 0 {
			t.Errorf("request span %s has no attempt span", c.spanID)
		}
		for _, a := range as {
			if u := a.str("url.full"); u != collect.URL+"/event" || a.str("server.address") != "127.0.0.1" || a.kind != tracepb.Span_SPAN_KIND_CLIENT {
				t.Errorf("attempt span: url.full %q, server.address %q, kind %v", u, a.str("server.address"), a.kind)
			}
			if p, _ := a.int("server.port"); p == 0 || a.str("http.request.method") != "POST" {
				t.Errorf("attempt span: %v", a.attrs)
			}
		}
		if len(as) == 1 {
			continue
		}
		retried++
		// In start order: resend counts absent (or 0), 1, 2.
		for i := range as {
			for j := i + 1; j < len(as); j++ {
				if as[j].start < as[i].start {
					as[i], as[j] = as[j], as[i]
				}
			}
		}
		var got []string
		for _, a := range as {
			st, _ := a.int("http.response.status_code")
			rc, ok := a.int("http.request.resend_count")
			got = append(got, fmt.Sprintf("%d/%d/%v", st, rc, ok && rc > 0))
		}
		if fmt.Sprint(got) != "[503/0/false 503/1/true 204/2/true]" {
			t.Errorf("the retried request's attempts (status/resend_count/present): %v, want [503/0/false 503/1/true 204/2/true]", got)
		}
	}
	t.Logf("%d spans: %d process, %d receive, %d request, %d attempt, %d DLQ send", len(spans), len(process), len(poll), len(collects),
		len(spans)-len(process)-len(poll)-len(collects)-len(sends), len(sends))
	if retried != 1 {
		t.Errorf("%d requests with more than one attempt, want 1 (the collector failed one request twice)", retried)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
