package atinternet

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/pipeline"
)

// A traced client (Config.TracerProvider) records two levels of spans:
//
//   - per request (Send), an internal span "collect <integration>", the
//     root of a trace of its own, linked to the span of each hit's origin
//     (a record's process span), which it tells of the request
//     (pipeline.RequestLinker) so that the link goes both ways;
//   - per attempt, a child client span "POST" with the HTTP semantic
//     conventions, from otelhttp's transport: http.request.method,
//     url.full (without its query: idclient is a visitor id),
//     server.address, server.port, network.protocol.version,
//     http.response.status_code, error.type; and http.request.resend_count
//     on a retry (1 for the first retry, …). An attempt that failed
//     without a response also has atrelay.reason (ErrorReason's label).

// ScopeName is the instrumentation scope of the request spans (otelhttp
// names the attempt spans' scope).
const ScopeName = "github.com/atrelay/atrelay/sinks/atinternet"

// The attributes of a request span besides the semantic conventions'.
const (
	attrIntegration = attribute.Key("atrelay.integration")
	attrSiteID      = attribute.Key("atrelay.site_id")
	attrEvents      = attribute.Key("atrelay.events")
	attrOutcome     = attribute.Key("atrelay.outcome")
	attrReason      = attribute.Key("atrelay.reason")
)

// tracedTransport wraps base so that each attempt is a client span: otelhttp
// starts and ends it, and attemptTransport, inside it, completes it. It
// sends no trace context to the collect server and records no metrics (the
// client's hooks do).
func tracedTransport(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	return otelhttp.NewTransport(attemptTransport{base},
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithPropagators(propagation.NewCompositeTextMapPropagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
}

// attemptTransport runs inside otelhttp's transport, in the attempt's span:
// it replaces url.full with the URL without its query, adds the attempt's
// resend count, labels a failure without a response, and hands the body
// over as the in-memory reader it is.
type attemptTransport struct{ base http.RoundTripper }

func (t attemptTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	a, _ := r.Context().Value(siteKey{}).(*attemptInfo)
	if a != nil && a.body != nil && r.Body != nil && r.Body != http.NoBody {
		// otelhttp wraps the body in a reader that net/http cannot know
		// to be in memory, so net/http writes the headers and the body
		// apart: two writes an attempt, which halved the throughput of a
		// request per event. The body is the request's, in memory.
		_ = r.Body.Close()
		in := *r
		in.Body = io.NopCloser(bytes.NewReader(a.body))
		r = &in
	}
	span := trace.SpanFromContext(r.Context())
	if !span.IsRecording() {
		return t.base.RoundTrip(r)
	}
	u := *r.URL
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	attrs := []attribute.KeyValue{semconv.URLFull(u.String())}
	// retryablehttp numbers attempts from 0 (requestLogHook).
	if a != nil && a.attempt > 0 {
		attrs = append(attrs, semconv.HTTPRequestResendCount(a.attempt))
	}
	span.SetAttributes(attrs...)
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		span.SetAttributes(attrReason.String(ErrorReason(err)))
	}
	return resp, err
}

// startSpan starts the request's span, linked to the span of each hit's
// origin that has one, and tells those origins of it.
func (c *Client) startSpan(ctx context.Context, req pipeline.Request) (context.Context, trace.Span) {
	var links []trace.Link
	for _, h := range req.Hits {
		if h.Origin == nil {
			continue
		}
		if sc := h.Origin.SpanContext(); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, attrIntegration.String(req.Site.Integration), attrSiteID.Int64(req.Site.ID), attrEvents.Int(len(req.Hits)))
	if u, err := url.Parse(req.Site.Endpoint); err == nil {
		attrs = append(attrs, semconv.ServerAddress(u.Hostname()))
		if p := port(u); p > 0 {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	ctx, span := c.tracer.Start(ctx, "collect "+req.Site.Integration, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithLinks(links...), trace.WithAttributes(attrs...))
	if sc := span.SpanContext(); sc.IsValid() {
		for _, h := range req.Hits {
			if l, ok := h.Origin.(pipeline.RequestLinker); ok {
				l.LinkRequest(sc)
			}
		}
	}
	return ctx, span
}

// port is the URL's port, explicit or the scheme's.
func port(u *url.URL) int {
	if p := u.Port(); p != "" {
		n, _ := strconv.Atoi(p)
		return n
	}
	switch u.Scheme {
	case "https":
		return 443
	case "http":
		return 80
	}
	return 0
}

// endSpan ends the request's span with its settlement: outcome, reason, the
// last status; a request that was not delivered is an error, its
// error.type the reason.
func endSpan(span trace.Span, s pipeline.Settlement) {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, attrOutcome.String(s.Outcome.String()))
	if s.Status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(s.Status))
	}
	if s.Outcome != pipeline.Delivered {
		et := semconv.ErrorTypeOther
		if s.Reason != "" {
			et = semconv.ErrorTypeKey.String(s.Reason)
		}
		attrs = append(attrs, attrReason.String(s.Reason), et)
		msg := s.Reason
		if s.Err != nil {
			msg = s.Err.Error()
		}
		span.SetStatus(codes.Error, msg)
	}
	span.SetAttributes(attrs...)
	span.End()
}
