// Package sandbox is a collect server that behaves like Piano Analytics'
// (SPEC §2) and checks every hit strictly: the demo's collector, `atrelay
// collector`, and the integration tests' HTTP peer.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/atrelay/atrelay/internal/piano"
)

// Hit is one accepted event.
type Hit struct {
	Site     int64
	Path     string
	IDClient string
	Name     string
	Data     map[string]any
	Received time.Time
}

// Request is one request as received.
type Request struct {
	Method string
	URL    string // path and query as received
	Body   string
	Status int
	// UserAgent tells apart the members of a group sharing one collector.
	UserAgent string
}

// Rejection is a request answered 400, with the rule it broke.
type Rejection struct {
	Rule    string
	Request Request
}

// Stats counts what the collector saw; counts are exact whatever is stored.
type Stats struct {
	Requests   int
	Hits       int
	Rejections int
	// PerSite maps a site id to hits per event name.
	PerSite map[int64]map[string]int
}

// Collector is an http.Handler. It is safe for concurrent use.
type Collector struct {
	maxStored int
	maxRaw    int
	log       io.Writer

	mu         sync.Mutex
	hits       []Hit
	requests   []Request
	rejections []Rejection
	stats      Stats
	failNext   []failure
	hold       chan struct{}
	onRequest  func(Request)
	waiters    []waiter
}

type failure struct {
	status     int
	retryAfter string
}

type waiter struct {
	n  int
	ch chan struct{}
}

// Option configures a Collector.
type Option func(*Collector)

// WithMaxStoredHits bounds the hits kept for Hits (default 1,000,000).
func WithMaxStoredHits(n int) Option { return func(c *Collector) { c.maxStored = n } }

// WithMaxRawRequests bounds the raw requests kept for Requests (default 100).
func WithMaxRawRequests(n int) Option { return func(c *Collector) { c.maxRaw = n } }

// WithLog prints each accepted hit and each rejection as they come.
func WithLog(w io.Writer) Option { return func(c *Collector) { c.log = w } }

// New returns a collector.
func New(opts ...Option) *Collector {
	c := &Collector{maxStored: 1_000_000, maxRaw: 100, stats: Stats{PerSite: map[int64]map[string]int{}}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// maxBody bounds a request body: 50 events of at most a few KiB each.
const maxBody = 1 << 20

// ServeHTTP checks one request and answers 204, 400 with the rule broken, or
// an injected failure.
func (c *Collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	req := Request{Method: r.Method, URL: r.URL.RequestURI(), Body: string(body), UserAgent: r.UserAgent()}

	c.mu.Lock()
	hold, onRequest := c.hold, c.onRequest
	c.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
			return
		}
	}

	c.mu.Lock()
	if len(c.failNext) > 0 {
		f := c.failNext[0]
		c.failNext = c.failNext[1:]
		c.stats.Requests++
		c.mu.Unlock()
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		req.Status = f.status
		if onRequest != nil {
			onRequest(req)
		}
		http.Error(w, "injected failure", f.status)
		return
	}
	c.mu.Unlock()

	hits, rule := check(r, body)
	now := time.Now()
	c.mu.Lock()
	c.stats.Requests++
	if rule != "" {
		req.Status = http.StatusBadRequest
		c.stats.Rejections++
		c.rejections = append(c.rejections, Rejection{Rule: rule, Request: req})
	} else {
		req.Status = http.StatusNoContent
		for i := range hits {
			hits[i].Received = now
			c.stats.Hits++
			ps := c.stats.PerSite[hits[i].Site]
			if ps == nil {
				ps = map[string]int{}
				c.stats.PerSite[hits[i].Site] = ps
			}
			ps[hits[i].Name]++
			if len(c.hits) < c.maxStored {
				c.hits = append(c.hits, hits[i])
			}
		}
		c.wake()
	}
	if len(c.requests) < c.maxRaw {
		c.requests = append(c.requests, req)
	}
	c.mu.Unlock()
	if onRequest != nil {
		onRequest(req)
	}
	if c.log != nil {
		if rule != "" {
			fmt.Fprintf(c.log, "REJECTED %s: %s\n", req.URL, rule)
		}
		for _, h := range hits {
			fmt.Fprintf(c.log, "hit site=%d idclient=%s event=%s props=%d\n", h.Site, h.IDClient, h.Name, len(h.Data))
		}
	}
	if rule != "" {
		http.Error(w, rule, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// wake releases the waiters whose count is reached; c.mu is held.
func (c *Collector) wake() {
	kept := c.waiters[:0]
	for _, wt := range c.waiters {
		if c.stats.Hits >= wt.n {
			close(wt.ch)
		} else {
			kept = append(kept, wt)
		}
	}
	c.waiters = kept
}

// check applies SPEC §2 to a request and returns its hits, or the rule it
// broke.
func check(r *http.Request, body []byte) ([]Hit, string) {
	if r.Method != http.MethodPost {
		return nil, "method must be POST, not " + r.Method
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	if path == "" {
		return nil, "path: the collect path must not be empty"
	}
	q := r.URL.Query()
	if len(q["s"]) != 1 {
		return nil, "query: exactly one s (site id) is required"
	}
	site, err := strconv.ParseInt(q.Get("s"), 10, 64)
	if err != nil || site <= 0 {
		return nil, "query: s must be a positive integer"
	}
	if len(q["idclient"]) != 1 || q.Get("idclient") == "" {
		return nil, "query: exactly one non-empty idclient is required"
	}
	if ct := strings.ReplaceAll(strings.ToLower(r.Header.Get("Content-Type")), " ", ""); ct != "text/plain;charset=utf-8" {
		return nil, "header: Content-Type must be text/plain;charset=UTF-8"
	}
	if !strings.HasPrefix(r.Header.Get("User-Agent"), "atrelay/") {
		return nil, "header: User-Agent must name atrelay/<version>"
	}
	if len(body) > maxBody {
		return nil, "body: larger than 1 MiB"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var payload struct {
		Events []map[string]json.RawMessage `json:"events"`
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, "body: not a JSON object: " + err.Error()
	}
	if _, ok := raw["events"]; !ok || len(raw) != 1 {
		return nil, `body: must be exactly {"events":[...]}`
	}
	if err := dec.Decode(&payload); err != nil {
		return nil, "body: events must be an array of objects: " + err.Error()
	}
	if n := len(payload.Events); n == 0 || n > piano.MaxEventsPerRequest {
		return nil, fmt.Sprintf("body: a request carries 1 to %d events, not %d", piano.MaxEventsPerRequest, n)
	}
	hits := make([]Hit, 0, len(payload.Events))
	for i, ev := range payload.Events {
		p := fmt.Sprintf("events[%d]", i)
		var name string
		if err := json.Unmarshal(ev["name"], &name); err != nil || len(ev) != 2 {
			return nil, p + `: must be exactly {"name":"…","data":{…}}`
		}
		if err := piano.CheckEventName(name); err != nil {
			return nil, fmt.Sprintf("%s.name: %q %v", p, name, err)
		}
		d := json.NewDecoder(bytes.NewReader(ev["data"]))
		d.UseNumber()
		var data map[string]any
		if err := d.Decode(&data); err != nil || data == nil {
			return nil, p + ".data: must be an object"
		}
		for k, v := range data {
			if rule := checkProp(k, v); rule != "" {
				return nil, fmt.Sprintf("%s.data.%s: %s", p, k, rule)
			}
		}
		if _, ok := data["event_date"]; !ok {
			return nil, p + ".data.event_date: required (the original event time, RFC 3339)"
		}
		hits = append(hits, Hit{Site: site, Path: path, IDClient: q.Get("idclient"), Name: name, Data: data})
	}
	return hits, ""
}

// checkProp returns the rule a property breaks, or "".
func checkProp(k string, v any) string {
	if err := piano.CheckKey(k); err != nil {
		return "key " + err.Error()
	}
	switch x := v.(type) {
	case string:
		if utf8.RuneCountInString(x) > piano.MaxStringLen {
			return fmt.Sprintf("string longer than %d characters", piano.MaxStringLen)
		}
		if piano.IsDateKey(k) {
			if _, err := time.Parse(time.RFC3339Nano, x); err != nil {
				return "date property must be RFC 3339 or epoch seconds"
			}
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			if piano.IsDateKey(k) && (i < 0 || i > 1e11) {
				return "date property must be epoch seconds, not milliseconds"
			}
			return ""
		}
		if !strings.ContainsAny(x.String(), ".eE") {
			return "integer out of int64 range"
		}
		f, err := x.Float64()
		if err != nil || math.Abs(f) > piano.MaxDecimal {
			return "decimal must be within ±1e15"
		}
		if piano.IsDateKey(k) {
			return "date property must be RFC 3339 or epoch seconds"
		}
	case bool:
		if piano.IsDateKey(k) {
			return "date property must be RFC 3339 or epoch seconds"
		}
	default:
		return "value must be a string, number or boolean"
	}
	return ""
}

// FailNext makes the next n requests answer status (with Retry-After when
// retryAfter is not empty); they record no hits.
func (c *Collector) FailNext(n, status int, retryAfter string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for range n {
		c.failNext = append(c.failNext, failure{status, retryAfter})
	}
}

// ClearFailures drops the failures FailNext queued and not yet served.
func (c *Collector) ClearFailures() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext = nil
}

// Hold makes requests wait until release is called (a slow collector).
func (c *Collector) Hold() (release func()) {
	ch := make(chan struct{})
	c.mu.Lock()
	c.hold = ch
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.hold = nil
			c.mu.Unlock()
			close(ch)
		})
	}
}

// OnRequest calls fn after each request was recorded, before the response
// is written.
func (c *Collector) OnRequest(fn func(Request)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onRequest = fn
}

// WaitHits blocks until n hits were accepted in total, or ctx ends.
func (c *Collector) WaitHits(ctx context.Context, n int) error {
	c.mu.Lock()
	if c.stats.Hits >= n {
		c.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	c.waiters = append(c.waiters, waiter{n, ch})
	got := c.stats.Hits
	c.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		c.mu.Lock()
		got = c.stats.Hits
		c.mu.Unlock()
		return fmt.Errorf("sandbox: %d hits of %d: %w", got, n, ctx.Err())
	}
}

// Hits returns the accepted hits (up to WithMaxStoredHits).
func (c *Collector) Hits() []Hit {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Hit(nil), c.hits...)
}

// Requests returns the first raw requests (up to WithMaxRawRequests).
func (c *Collector) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.requests...)
}

// Rejections returns the rejected requests with their rules.
func (c *Collector) Rejections() []Rejection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Rejection(nil), c.rejections...)
}

// Stats returns a copy of the counts.
func (c *Collector) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.PerSite = make(map[int64]map[string]int, len(c.stats.PerSite))
	for site, m := range c.stats.PerSite {
		s.PerSite[site] = make(map[string]int, len(m))
		for k, v := range m {
			s.PerSite[site][k] = v
		}
	}
	return s
}

// ListenAndServe serves the collector on addr until ctx ends, then shuts
// down gracefully. ready, when not nil, receives the bound address.
func (c *Collector) ListenAndServe(ctx context.Context, addr string, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	if ready != nil {
		ready(ln.Addr())
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			return err
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
