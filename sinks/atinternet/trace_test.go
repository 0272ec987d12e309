package atinternet_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// origin is a hit's Origin with a fixed span context, which keeps the
// request span contexts it is told of.
type origin struct {
	sc trace.SpanContext

	mu       sync.Mutex
	requests []trace.SpanContext
}

func (o *origin) SpanContext() trace.SpanContext { return o.sc }

func (o *origin) LinkRequest(sc trace.SpanContext) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.requests = append(o.requests, sc)
}

// attrs returns a span's attributes by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, a := range s.Attributes() {
		m[a.Key] = a.Value
	}
	return m
}

// TestRequestAndAttemptSpans: a request the collector answers 503, 503,
// then 204 is one "collect <integration>" span with three "POST" client
// spans under it, their http.request.resend_count absent, 1, 2, their
// status codes 503, 503, 204 (the 503s errors), url.full without the query
// (no idclient), server.address and server.port apart. The request span
// links to each traced origin (an untraced origin and a hit without one add
// no link) and tells it of the request (LinkRequest); a 400 makes it an
// error, error.type http_400.
// Mutations caught (each tried once): the resend count from attempt+1
// (2, 3 on the retries); url.full left as otelhttp records it (the query,
// with idclient); the transport not wrapped in otelhttp's (no attempt
// span); LinkRequest not called (the origin is told of nothing).
func TestRequestAndAttemptSpans(t *testing.T) {
	var n atomic.Int32
	reject := atomic.Bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch {
		case reject.Load():
			w.WriteHeader(http.StatusBadRequest)
		case n.Add(1) <= 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c := client(t, atinternet.Config{TracerProvider: tp})
	traced := &origin{sc: trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})}
	site := &pipeline.Site{Integration: "fitness", ID: 7, Endpoint: srv.URL + "/event"}
	req := request(site, "visitor-42", 3)
	req.Hits[0].Origin = traced
	req.Hits[1].Origin = &origin{}

	if s := c.Send(context.Background(), req); s.Outcome != pipeline.Delivered {
		t.Fatalf("Send = %+v", s)
	}
	var collect sdktrace.ReadOnlySpan
	var attempts []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		switch s.Name() {
		case "collect fitness":
			collect = s
		case "POST":
			attempts = append(attempts, s)
		default:
			t.Errorf("unexpected span %q", s.Name())
		}
	}
	if collect == nil || len(attempts) != 3 {
		t.Fatalf("request span %v, %d attempt spans; want one and 3", collect != nil, len(attempts))
	}
	if l := collect.Links(); len(l) != 1 || !l[0].SpanContext.Equal(traced.sc) {
		t.Errorf("request span links %v, want only the traced origin %v", l, traced.sc)
	}
	if len(traced.requests) != 1 || !traced.requests[0].Equal(collect.SpanContext()) {
		t.Errorf("the origin was told of %v, want the request span %v", traced.requests, collect.SpanContext())
	}
	ra := attrs(collect)
	if ra["atrelay.outcome"].AsString() != "delivered" || ra["http.response.status_code"].AsInt64() != 204 ||
		ra["atrelay.events"].AsInt64() != 3 || ra["atrelay.integration"].AsString() != "fitness" || collect.Status().Code == codes.Error {
		t.Errorf("request span %v, status %v", ra, collect.Status())
	}
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	for i, a := range attempts {
		at := attrs(a)
		if a.Parent().SpanID() != collect.SpanContext().SpanID() || a.SpanKind() != trace.SpanKindClient {
			t.Errorf("attempt %d: parent %v kind %v, want the request span's child, client", i, a.Parent().SpanID(), a.SpanKind())
		}
		resend, ok := at["http.request.resend_count"]
		if (i == 0 && ok) || (i > 0 && resend.AsInt64() != int64(i)) {
			t.Errorf("attempt %d: http.request.resend_count %v (present %v), want %d (absent on the first)", i, resend.AsInt64(), ok, i)
		}
		wantStatus := []int64{503, 503, 204}[i]
		if got := at["http.response.status_code"].AsInt64(); got != wantStatus {
			t.Errorf("attempt %d: status %d, want %d", i, got, wantStatus)
		}
		if (a.Status().Code == codes.Error) != (wantStatus >= 500) || (wantStatus >= 500 && at["error.type"].AsString() != "503") {
			t.Errorf("attempt %d: span status %v, error.type %q", i, a.Status(), at["error.type"].AsString())
		}
		if got := at["url.full"].AsString(); got != srv.URL+"/event" {
			t.Errorf("attempt %d: url.full %q, want %q (no query)", i, got, srv.URL+"/event")
		}
		if at["http.request.method"].AsString() != "POST" || at["server.address"].AsString() != host || at["server.port"].AsInt64() == 0 ||
			!strings.HasSuffix(srv.URL, ":"+port) {
			t.Errorf("attempt %d: %v", i, at)
		}
	}
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if strings.Contains(a.Value.Emit(), "visitor-42") {
				t.Errorf("span %q records the idclient in %s=%s", s.Name(), a.Key, a.Value.Emit())
			}
		}
	}

	reject.Store(true)
	if s := c.Send(context.Background(), req); s.Outcome != pipeline.Rejected {
		t.Fatalf("Send = %+v", s)
	}
	spans := rec.Ended()
	last := spans[len(spans)-1]
	if la := attrs(last); last.Name() != "collect fitness" || last.Status().Code != codes.Error ||
		la["error.type"].AsString() != "http_400" || la["atrelay.outcome"].AsString() != "dlq" {
		t.Errorf("rejected request span %q: status %v, %v", last.Name(), last.Status(), la)
	}
}

// TestAttemptSpanWithoutResponse: an attempt that fails without a response
// is an error span with atrelay.reason, the retries metric's label.
// Mutation caught: the reason not set on the attempt span.
func TestAttemptSpanWithoutResponse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	c := client(t, atinternet.Config{TracerProvider: tp, MaxRetries: 1})
	site := &pipeline.Site{Integration: "fitness", ID: 7, Endpoint: "http://" + addr + "/event"}
	if s := c.Send(context.Background(), request(site, "v", 1)); s.Outcome != pipeline.RetryLater {
		t.Fatalf("Send = %+v", s)
	}
	var attempts int
	for _, s := range rec.Ended() {
		if s.Name() != "POST" {
			continue
		}
		attempts++
		if at := attrs(s); s.Status().Code != codes.Error || at["atrelay.reason"].AsString() != "connection_refused" {
			t.Errorf("attempt span: status %v, %v", s.Status(), at)
		}
	}
	if attempts != 2 {
		t.Errorf("%d attempt spans, want 2 (MaxRetries 1)", attempts)
	}
}

// bodyTypes is a transport that keeps the type of each request body it
// gets, and answers 204.
type bodyTypes struct {
	mu    sync.Mutex
	types []string
}

func (b *bodyTypes) RoundTrip(r *http.Request) (*http.Response, error) {
	_, _ = io.Copy(io.Discard, r.Body)
	_ = r.Body.Close()
	b.mu.Lock()
	b.types = append(b.types, fmt.Sprintf("%T", r.Body))
	b.mu.Unlock()
	return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r, ProtoMajor: 1, ProtoMinor: 1}, nil
}

// TestTracedBodyStaysInMemory: under otelhttp, the transport still gets
// the body as an in-memory reader, as without tracing. otelhttp's own
// wrapper makes net/http write the headers and the body in two writes,
// which halved the traced throughput of BenchmarkEndToEnd/per-visitor.
// Mutation caught: attemptTransport passing the request on as otelhttp
// hands it over (the body is otelhttp's *trackedRequestBody).
func TestTracedBodyStaysInMemory(t *testing.T) {
	base := &bodyTypes{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	c := atinternet.NewClient(atinternet.Config{TracerProvider: tp, Transport: base, MaxRetries: 1})
	site := &pipeline.Site{Integration: "fitness", ID: 7, Endpoint: "http://collect.invalid/event"}
	if s := c.Send(context.Background(), request(site, "v", 2)); s.Outcome != pipeline.Delivered {
		t.Fatalf("Send = %+v", s)
	}
	if len(base.types) != 1 || strings.Contains(base.types[0], "otelhttp") {
		t.Errorf("the transport got bodies of types %v, want an in-memory reader", base.types)
	}
}
