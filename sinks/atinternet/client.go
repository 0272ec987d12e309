package atinternet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/failurelog"
	"github.com/atrelay/atrelay/pipeline"
)

// Config shapes a Client.
type Config struct {
	// Concurrency is the most requests the service sends per site at a
	// time (default 16); the default transport keeps at least this many
	// connections per host alive and idle.
	Concurrency int
	// RequestTimeout bounds one attempt (default DefaultRequestTimeout).
	RequestTimeout time.Duration
	// Backoff is the wait between attempts (unset bounds take backoff's
	// defaults); its Max also caps a collector's Retry-After.
	Backoff backoff.Config
	// MaxRetries bounds the retries of a transient failure; negative means
	// retry until the context ends — the service's choice: its partition
	// pauses rather than losing the event.
	MaxRetries int
	// UserAgent names atrelay and its version.
	UserAgent string
	// Transport wraps or replaces the HTTP transport (e.g. OpenTelemetry);
	// default a keep-alive transport that tries HTTP/2 over TLS.
	Transport http.RoundTripper
	// RootCAs, keyed by collect host (host or host:port, as in the site's
	// endpoint), replaces the system's roots for that host
	// (integrations[].tls.ca_file). The default transport only.
	RootCAs map[string]*x509.CertPool
	Logger  *slog.Logger
	// OnResponse, when set, sees every attempt's status (0 for a transport
	// error) and duration.
	OnResponse func(site *pipeline.Site, status int, d time.Duration)
	// OnRetry, when set, is called before each retry with its reason
	// (http_503, timeout, connection).
	OnRetry func(site *pipeline.Site, reason string)
	// TracerProvider, when set, traces each request and each of its
	// attempts (see ScopeName); Transport is then wrapped in otelhttp's.
	TracerProvider trace.TracerProvider
}

// Client sends requests to collect servers. Build it once; it is safe for
// concurrent use and keeps connections alive between requests.
type Client struct {
	cfg       Config
	rc        *retryablehttp.Client
	tracer    trace.Tracer      // nil when not tracing
	transport http.RoundTripper // the transport before tracing wraps it
	// The values of the headers every request carries, shared by all
	// requests (read only: net/http copies a header map it changes).
	contentType, userAgent []string

	sites sync.Map // *pipeline.Site → *siteState
}

// siteKey carries a request's attemptInfo through retryablehttp's hooks,
// which are per client, not per request.
type siteKey struct{}

// attemptInfo is touched only by the goroutine running the request's Do.
type attemptInfo struct {
	site    *pipeline.Site
	attempt int
	start   time.Time
	body    []byte // the request body, for the traced transport (attemptTransport)
}

// maxErrorBody is how much of an error response is kept.
const maxErrorBody = 1 << 10

// defaultConcurrency sizes the connection pool of a Client built without
// one; the service always passes delivery.concurrency.
const defaultConcurrency = 16

// idleConnsPerHost is how many idle connections the default transport
// keeps per host. Sites on one collect domain share its connections, so
// what is in flight to a host is delivery.concurrency times its sites; an
// idle pool smaller than that closed a connection after most requests and
// dialed a new one (two goroutines and their stacks each). A connection is
// opened only when every other is busy, so the pool never holds more than
// the host's peak in flight; IdleConnTimeout closes what a burst left.
const idleConnsPerHost = 1024

// writeBufferSize sends a request of up to 64 KiB (50 events of typical
// size, piano.MaxEventsPerRequest) in one write: with net/http's default
// of 4 KiB, a larger request took a second write. It costs 60 KiB more
// per connection.
const writeBufferSize = 64 << 10

// NewClient returns a client for cfg, with defaults for unset fields.
func NewClient(cfg Config) *Client {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = defaultConcurrency
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	cfg.Backoff.Default()
	if cfg.UserAgent == "" {
		cfg.UserAgent = "atrelay"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	transport := cfg.Transport
	if transport == nil {
		transport = withRoots(&http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        0, // per host only: see idleConnsPerHost
			MaxIdleConnsPerHost: max(cfg.Concurrency, idleConnsPerHost),
			WriteBufferSize:     writeBufferSize,
			// A collect server answers 204 or a short error: asking for
			// gzip cost two allocations a request and saved nothing.
			DisableCompression:  true,
			IdleConnTimeout:     90 * time.Second,
			TLSHandshakeTimeout: 10 * time.Second,
		}, cfg.RootCAs)
	}
	c := &Client{cfg: cfg, transport: transport, contentType: []string{"text/plain;charset=UTF-8"}, userAgent: []string{cfg.UserAgent}}
	if cfg.TracerProvider != nil {
		c.tracer = cfg.TracerProvider.Tracer(ScopeName)
		transport = tracedTransport(transport, cfg.TracerProvider)
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Transport: attemptTimeout{base: transport, timeout: cfg.RequestTimeout}}
	rc.Logger = nil // we log through slog, below
	rc.RetryWaitMin, rc.RetryWaitMax = cfg.Backoff.Min, cfg.Backoff.Max
	rc.RetryMax = cfg.MaxRetries
	if cfg.MaxRetries < 0 {
		rc.RetryMax = math.MaxInt32
	}
	rc.CheckRetry = c.checkRetry
	rc.Backoff = retryWait(cfg.Backoff)
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
			c.retrying(resp.Request.Context(), a.site, pipeline.StatusReason(resp.StatusCode), fmt.Errorf("HTTP %d", resp.StatusCode), a.attempt)
		}
	}
	c.rc = rc
	return c
}

// checkRetry is the retry policy of SPEC §2: 408, 425, 429, 5xx are
// transient, every other status is final. Every failure without a response
// is transient too — timeouts, resets, refused connections, DNS, a
// certificate that fails verification, a redirect loop: none of them is an
// answer about the events, and the service must keep its records until one
// comes (retryablehttp's default policy gives up on some of them, which
// used to leave records unsettled while the service ran). A failure
// without a response is reported here: no response hook runs for it.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		if a, ok := ctx.Value(siteKey{}).(*attemptInfo); ok {
			if c.cfg.OnResponse != nil {
				c.cfg.OnResponse(a.site, 0, time.Since(a.start))
			}
			c.retrying(ctx, a.site, ErrorReason(err), err, a.attempt)
		}
		return true, nil
	}
	return transientStatus(resp.StatusCode), nil
}

// ErrorReason labels a failure without a response: tls, dns,
// connection_refused, reset, timeout, redirects, or connection.
func ErrorReason(err error) string {
	var (
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		netErr  net.Error
	)
	switch {
	case errors.As(err, &certErr), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid), errors.As(err, &recErr):
		return "tls"
	case errors.As(err, &dnsErr):
		return "dns"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.As(err, &netErr) && netErr.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case strings.Contains(err.Error(), "redirects"):
		// net/http's "stopped after 10 redirects" has no type of its own.
		return "redirects"
	}
	return "connection"
}

func transientStatus(s int) bool {
	return s == http.StatusRequestTimeout || s == http.StatusTooEarly || s == http.StatusTooManyRequests || s >= 500
}

// retryWait is retryablehttp's wait before a retry: a collector's
// Retry-After (seconds or an HTTP date) on 429 and 503, held within the
// backoff's bounds, else the backoff's own delay.
func retryWait(b backoff.Config) retryablehttp.Backoff {
	return func(_, _ time.Duration, attempt int, resp *http.Response) time.Duration {
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			if d, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				return min(max(d, b.Min), b.Max)
			}
		}
		return b.Delay(attempt)
	}
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

// Send delivers one request, retrying every transient failure until ctx
// ends (Config.MaxRetries < 0), and returns its settlement: Delivered on a
// 2xx; Rejected with reason http_<status> on a permanent status; RetryLater
// when ctx ended or the retries ran out first. Every response body is
// drained and closed.
func (c *Client) Send(ctx context.Context, req pipeline.Request) (s pipeline.Settlement) {
	if c.tracer != nil {
		var span trace.Span
		ctx, span = c.startSpan(ctx, req)
		defer func() { endSpan(span, s) }()
	}
	st := c.site(req.Site)
	body := Body(req.Hits)
	// The request is built with its final context: r.WithContext would
	// copy it twice (retryablehttp's and net/http's).
	ctx = context.WithValue(ctx, siteKey{}, &attemptInfo{site: req.Site, start: time.Now(), body: body})
	r, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, st.url(req.IDClient), body)
	if err != nil {
		// Only a malformed endpoint gets here, and config validation
		// refuses those: no retry can build this request.
		return pipeline.Settlement{Outcome: pipeline.Rejected, Reason: "bad_request", Err: err}
	}
	r.Header = http.Header{"Content-Type": c.contentType, "User-Agent": c.userAgent}
	st.waiting.Add(int64(len(req.Hits)))
	resp, err := c.rc.Do(r)
	st.waiting.Add(-int64(len(req.Hits)))
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
			drain(resp.Body)
		}
		reason := ErrorReason(err)
		if status != 0 {
			reason = pipeline.StatusReason(status)
		}
		if ctx.Err() != nil {
			err, reason = ctx.Err(), "canceled"
		}
		return pipeline.Settlement{Outcome: pipeline.RetryLater, Reason: reason, Status: status, Err: fmt.Errorf("collect server %s: %w", req.Site.Endpoint, err)}
	}
	defer drain(resp.Body)
	st.failures.Succeeded()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return pipeline.Settlement{Outcome: pipeline.Delivered, Status: resp.StatusCode}
	case transientStatus(resp.StatusCode):
		return pipeline.Settlement{Outcome: pipeline.RetryLater, Reason: pipeline.StatusReason(resp.StatusCode), Status: resp.StatusCode,
			Err: fmt.Errorf("collect server %s: HTTP %d: retries exhausted", req.Site.Endpoint, resp.StatusCode)}
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return pipeline.Settlement{Outcome: pipeline.Rejected, Reason: pipeline.StatusReason(resp.StatusCode), Status: resp.StatusCode,
			Err: fmt.Errorf("collect server rejected the request: HTTP %d: %s", resp.StatusCode, b)}
	}
}

// CloseIdleConnections closes the connections kept alive and idle; the
// client stays usable and opens new ones as it needs them.
func (c *Client) CloseIdleConnections() { closeIdle(c.transport) }

// retrying counts a failed attempt and logs it: the first failure of a
// run at once, then a summary every failurelog.DefaultPeriod, then the
// recovery.
func (c *Client) retrying(ctx context.Context, site *pipeline.Site, reason string, err error, attempt int) {
	c.site(site).failures.FailedContext(ctx, err, "reason", reason, "attempt", attempt)
	if c.cfg.OnRetry != nil {
		c.cfg.OnRetry(site, reason)
	}
}

// siteState is what the client follows per site: its run of failures, and
// the events of its requests not answered yet, which the failure summaries
// report; and its collect URL up to the visitor's idclient.
type siteState struct {
	failures *failurelog.Log
	waiting  atomic.Int64
	prefix   string // URL(site, "")
}

func (c *Client) site(site *pipeline.Site) *siteState {
	if st, ok := c.sites.Load(site); ok {
		return st.(*siteState)
	}
	st := &siteState{prefix: URL(site, "")}
	st.failures = failurelog.New(c.cfg.Logger.With("integration", site.Integration, "site_id", site.ID, "endpoint", site.Endpoint),
		"collect request", slog.LevelWarn, failurelog.DefaultPeriod).
		Describe(func() []any { return []any{"events_waiting", st.waiting.Load()} })
	actual, _ := c.sites.LoadOrStore(site, st)
	return actual.(*siteState)
}

// url is URL(site, idclient).
func (st *siteState) url(idclient string) string { return st.prefix + url.QueryEscape(idclient) }

// drain reads what is left of a body (bounded) so the connection can be
// reused, and closes it.
func drain(body io.ReadCloser) {
	if body != http.NoBody { // a 204's: nothing to read
		_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	}
	_ = body.Close()
}
