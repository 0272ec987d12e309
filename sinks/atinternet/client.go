package atinternet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/pipeline"
)

// Config shapes a Client.
type Config struct {
	// Concurrency bounds the requests in flight per site (default 16).
	Concurrency int
	// RequestTimeout bounds one attempt (default 10s).
	RequestTimeout time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential wait between
	// attempts; BackoffMax also caps a collector's Retry-After.
	BackoffMin, BackoffMax time.Duration
	// MaxRetries bounds the retries of a transient failure; negative means
	// retry until the context ends — the service's choice: its partition
	// pauses rather than losing the event.
	MaxRetries int
	// UserAgent names atrelay and its version.
	UserAgent string
	// Transport wraps or replaces the HTTP transport (e.g. OpenTelemetry);
	// default a keep-alive transport that tries HTTP/2 over TLS.
	Transport http.RoundTripper
	Logger    *slog.Logger
	// OnResponse, when set, sees every attempt's status (0 for a transport
	// error) and duration.
	OnResponse func(site *pipeline.Site, status int, d time.Duration)
	// OnRetry, when set, is called before each retry with its reason
	// (http_503, timeout, connection).
	OnRetry func(site *pipeline.Site, reason string)
	// Tracer, when set, records a client span per request, linked through
	// Links to the spans of the records it carries.
	Tracer trace.Tracer
	Links  func(*pipeline.Hit) trace.SpanContext
}

// RejectedError is a permanent failure: the collect server answered a 4xx
// other than 408, 425 and 429. Retrying the same request cannot succeed, so
// its records go to the dead-letter topic.
type RejectedError struct {
	Status int
	// Body is the start of the response body, at most 1 KiB.
	Body string
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("collect server rejected the request: HTTP %d: %s", e.Status, e.Body)
}

// Reason returns the failure's label, http_<status>.
func (e *RejectedError) Reason() string { return "http_" + strconv.Itoa(e.Status) }

// TransientError is a failure that retrying may fix: the client gave up only
// because its retries or its context ran out.
type TransientError struct {
	Status int // last status, 0 when there was no response
	Err    error
}

func (e *TransientError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("collect server: HTTP %d: %v", e.Status, e.Err)
	}
	return fmt.Sprintf("collect server: %v", e.Err)
}

// Unwrap returns the cause.
func (e *TransientError) Unwrap() error { return e.Err }

// Outcome is how a request's records are settled.
type Outcome int

// The outcomes of a request.
const (
	Delivered  Outcome = iota // 2xx: settle the records
	Rejected                  // permanent: dead-letter the records
	RetryLater                // no answer: leave the records unsettled
)

// OutcomeOf classifies the error Send or Deliver reported for a request.
func OutcomeOf(err error) Outcome {
	var rej *RejectedError
	switch {
	case err == nil:
		return Delivered
	case errors.As(err, &rej):
		return Rejected
	default:
		return RetryLater
	}
}

// Client sends requests to collect servers. Build it once; it is safe for
// concurrent use and keeps connections alive between requests.
type Client struct {
	cfg Config
	rc  *retryablehttp.Client

	mu   sync.Mutex
	sems map[*pipeline.Site]chan struct{}
}

// siteKey carries a request's attemptInfo through retryablehttp's hooks,
// which are per client, not per request.
type siteKey struct{}

// attemptInfo is touched only by the goroutine running the request's Do.
type attemptInfo struct {
	site    *pipeline.Site
	attempt int
	start   time.Time
}

// maxErrorBody is how much of an error response is kept.
const maxErrorBody = 1 << 10

// NewClient returns a client for cfg, with defaults for unset fields.
func NewClient(cfg Config) *Client {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 200 * time.Millisecond
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(30*time.Second, cfg.BackoffMin)
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "atrelay"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	transport := cfg.Transport
	if transport == nil {
		transport = &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: cfg.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		}
	}
	c := &Client{cfg: cfg, sems: map[*pipeline.Site]chan struct{}{}}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: transport, Timeout: cfg.RequestTimeout}
	rc.Logger = nil // we log through slog, below
	rc.RetryWaitMin, rc.RetryWaitMax = cfg.BackoffMin, cfg.BackoffMax
	rc.RetryMax = cfg.MaxRetries
	if cfg.MaxRetries < 0 {
		rc.RetryMax = math.MaxInt32
	}
	rc.CheckRetry = checkRetry
	rc.Backoff = backoff
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.RequestLogHook = func(_ retryablehttp.Logger, r *http.Request, n int) {
		if a, ok := r.Context().Value(siteKey{}).(*attemptInfo); ok {
			a.attempt, a.start = n, time.Now()
		}
	}
	rc.ResponseLogHook = func(_ retryablehttp.Logger, resp *http.Response) {
		a, ok := resp.Request.Context().Value(siteKey{}).(*attemptInfo)
		if !ok {
			return
		}
		if c.cfg.OnResponse != nil {
			c.cfg.OnResponse(a.site, resp.StatusCode, time.Since(a.start))
		}
		if transientStatus(resp.StatusCode) {
			c.retrying(a.site, "http_"+strconv.Itoa(resp.StatusCode), a.attempt)
		}
	}
	c.rc = rc
	return c
}

// checkRetry is the retry policy of SPEC §2: 408, 425, 429, 5xx, timeouts and
// connection errors are transient; every other status is final.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		// retryablehttp's default tells the errors worth retrying
		// (timeouts, resets) from those that are not (bad URL, TLS trust).
		return retryablehttp.DefaultRetryPolicy(ctx, nil, err)
	}
	return transientStatus(resp.StatusCode), nil
}

func transientStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooEarly || s == http.StatusTooManyRequests || s >= 500
}

// backoff waits between min and max, doubling per attempt with jitter, and
// honours a Retry-After (seconds or an HTTP date) capped at max.
func backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return min(max(d, minWait), maxWait)
		}
	}
	d := minWait << min(attempt, 30)
	if d <= 0 || d > maxWait {
		d = maxWait
	}
	return d/2 + rand.N(d/2+1)
}

func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// URL returns the collect URL of a request: the site's endpoint with s and
// idclient, URL-escaped.
func URL(site *pipeline.Site, idclient string) string {
	return site.Endpoint + "?s=" + strconv.FormatInt(site.ID, 10) + "&idclient=" + url.QueryEscape(idclient)
}

// Body returns the request body {"events":[…]} of encoded hits.
func Body(hits []*pipeline.Hit) []byte {
	n := len(`{"events":[]}`)
	for _, h := range hits {
		n += len(h.Body) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, `{"events":[`...)
	for i, h := range hits {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, h.Body...)
	}
	return append(b, "]}"...)
}

// Send delivers one request, retrying transient failures. It returns nil on
// a 2xx, a *RejectedError on a permanent failure, and a *TransientError when
// retries or ctx ran out. Every response body is drained and closed.
func (c *Client) Send(ctx context.Context, req pipeline.Request) (err error) {
	if c.cfg.Tracer != nil {
		var span trace.Span
		ctx, span = c.startSpan(ctx, req)
		defer func() { endSpan(span, err) }()
	}
	r, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, URL(req.Site, req.IDClient), Body(req.Hits))
	if err != nil {
		return &RejectedError{Status: 0, Body: err.Error()}
	}
	r.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	r.Header.Set("User-Agent", c.cfg.UserAgent)
	r = r.WithContext(context.WithValue(ctx, siteKey{}, &attemptInfo{site: req.Site, start: time.Now()}))
	resp, err := c.rc.Do(r)
	if err != nil {
		if resp != nil {
			drain(resp.Body)
		}
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		if ctx.Err() != nil {
			return &TransientError{Status: status, Err: ctx.Err()}
		}
		return &TransientError{Status: status, Err: err}
	}
	defer drain(resp.Body)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case transientStatus(resp.StatusCode):
		return &TransientError{Status: resp.StatusCode, Err: errors.New("retries exhausted")}
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return &RejectedError{Status: resp.StatusCode, Body: string(b)}
	}
}

// startSpan starts the request's client span (OpenTelemetry HTTP
// conventions), linked to the spans of its records.
func (c *Client) startSpan(ctx context.Context, req pipeline.Request) (context.Context, trace.Span) {
	var links []trace.Link
	if c.cfg.Links != nil {
		for _, h := range req.Hits {
			if sc := c.cfg.Links(h); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
	}
	host := req.Site.Endpoint
	if u, err := url.Parse(req.Site.Endpoint); err == nil {
		host = u.Host
	}
	return c.cfg.Tracer.Start(ctx, "POST", trace.WithSpanKind(trace.SpanKindClient), trace.WithLinks(links...),
		trace.WithAttributes(
			attribute.String("http.request.method", http.MethodPost),
			attribute.String("server.address", host),
			attribute.String("url.full", req.Site.Endpoint),
			attribute.Int64("atrelay.site_id", req.Site.ID),
			attribute.Int("atrelay.events", len(req.Hits)),
		))
}

func endSpan(span trace.Span, err error) {
	var rej *RejectedError
	var te *TransientError
	switch {
	case err == nil:
	case errors.As(err, &rej):
		span.SetAttributes(attribute.Int("http.response.status_code", rej.Status))
		span.SetStatus(codes.Error, rej.Reason())
	case errors.As(err, &te):
		if te.Status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", te.Status))
		}
		span.SetStatus(codes.Error, te.Error())
	default:
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (c *Client) retrying(site *pipeline.Site, reason string, attempt int) {
	c.cfg.Logger.Warn("collect request failed; retrying", "site", site.ID, "integration", site.Integration, "reason", reason, "attempt", attempt)
	if c.cfg.OnRetry != nil {
		c.cfg.OnRetry(site, reason)
	}
}

// drain reads what is left of a body (bounded) so the connection can be
// reused, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}

func (c *Client) sem(site *pipeline.Site) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sems[site]
	if s == nil {
		s = make(chan struct{}, c.cfg.Concurrency)
		c.sems[site] = s
	}
	return s
}

// Deliver sends requests with at most Config.Concurrency in flight per site
// (shared by all concurrent Deliver calls), calls settle once per request as
// soon as it ends, and returns when every request has settled. This is the
// settlement contract: per request, hence per record, delivered (nil),
// rejected (*RejectedError), or retry-later (any other error).
func (c *Client) Deliver(ctx context.Context, reqs []pipeline.Request, settle func(pipeline.Request, error)) {
	var wg sync.WaitGroup
	for _, req := range reqs {
		sem := c.sem(req.Site)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			settle(req, &TransientError{Err: ctx.Err()})
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			settle(req, c.Send(ctx, req))
		})
	}
	wg.Wait()
}
