package atinternet_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/testtls"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func request(site *pipeline.Site, idclient string, n int) pipeline.Request {
	req := pipeline.Request{Site: site, IDClient: idclient}
	for i := range n {
		h := &pipeline.Hit{Name: "subscription_started", Props: []pipeline.Prop{
			{Key: "event_id", Value: pipeline.String("e" + string(rune('a'+i)))},
			{Key: "plan_price", Value: pipeline.Float(4.99)},
		}}
		atinternet.Encode(h)
		req.Hits = append(req.Hits, h)
	}
	return req
}

func client(t *testing.T, cfg atinternet.Config) *atinternet.Client {
	if cfg.Backoff.Min == 0 {
		cfg.Backoff = backoff.Config{Min: time.Millisecond, Max: 5 * time.Millisecond}
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "atrelay/test"
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = -1
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	if cfg.Transport == nil {
		cfg.Transport = tr
	}
	return atinternet.NewClient(cfg)
}

// TestExactRequest checks SPEC §2 byte for byte.
func TestExactRequest(t *testing.T) {
	var got *http.Request
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	site := &pipeline.Site{ID: 612345, Endpoint: srv.URL + "/subscription"}
	if st := client(t, atinternet.Config{UserAgent: "atrelay/0.1.0"}).Send(context.Background(), request(site, "a b&c=d/é", 2)); st.Outcome != pipeline.Delivered {
		t.Fatal(st)
	}
	checks := map[string][2]string{
		"method":       {got.Method, "POST"},
		"path":         {got.URL.Path, "/subscription"},
		"raw query":    {got.URL.RawQuery, "s=612345&idclient=a+b%26c%3Dd%2F%C3%A9"},
		"content type": {got.Header.Get("Content-Type"), "text/plain;charset=UTF-8"},
		"user agent":   {got.Header.Get("User-Agent"), "atrelay/0.1.0"},
		"body": {body, `{"events":[{"name":"subscription_started","data":{"event_id":"ea","plan_price":4.99}},` +
			`{"name":"subscription_started","data":{"event_id":"eb","plan_price":4.99}}]}`},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
}

// collector answers with the statuses given, then 204.
func collector(statuses ...int) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		i := int(n.Add(1)) - 1
		if i < len(statuses) {
			if statuses[i] == 400 {
				w.WriteHeader(400)
				w.Write([]byte(strings.Repeat("x", 10<<10)))
				return
			}
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(statuses[i])
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	return srv, &n
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		attempts int32
		outcome  pipeline.Outcome
	}{
		{"503 three times then 204", []int{503, 503, 503}, 4, pipeline.Delivered},
		{"429 with Retry-After 3600 is capped", []int{429}, 2, pipeline.Delivered},
		{"408 and 425 are transient", []int{408, 425}, 3, pipeline.Delivered},
		{"400 is permanent", []int{400}, 1, pipeline.Rejected},
		{"404 is permanent", []int{404}, 1, pipeline.Rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, n := collector(tt.statuses...)
			defer srv.Close()
			site := &pipeline.Site{ID: 1, Endpoint: srv.URL + "/event"}
			// The backoff cap (5ms) bounds a Retry-After of an hour: the
			// test finishing at all proves the cap.
			st := client(t, atinternet.Config{}).Send(context.Background(), request(site, "v", 1))
			if st.Outcome != tt.outcome {
				t.Fatalf("outcome %v (%v), want %v", st.Outcome, st.Err, tt.outcome)
			}
			if n.Load() != tt.attempts {
				t.Fatalf("%d attempts, want %d", n.Load(), tt.attempts)
			}
			if st.Outcome == pipeline.Rejected {
				if st.Reason != "http_"+itoa(tt.statuses[0]) || st.Status != tt.statuses[0] {
					t.Fatalf("rejection reason %q status %d", st.Reason, st.Status)
				}
				// The body is kept, bounded: 1 KiB of the 10 KiB the collector sent.
				if tt.statuses[0] == 400 && !strings.Contains(st.Err.Error(), strings.Repeat("x", 1<<10)) || strings.Contains(st.Err.Error(), strings.Repeat("x", 1<<10+1)) {
					t.Fatalf("rejection error does not carry 1 KiB of the body: %d bytes", len(st.Err.Error()))
				}
			}
		})
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestHangingCollectorTimesOutAndRetries(t *testing.T) {
	release := make(chan struct{})
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select { // the first attempt hangs until the client gives up on it
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	defer close(release)
	site := &pipeline.Site{ID: 1, Endpoint: srv.URL + "/event"}
	st := client(t, atinternet.Config{RequestTimeout: 50 * time.Millisecond}).Send(context.Background(), request(site, "v", 1))
	// At least 2: a loaded machine may time out a later attempt too.
	if st.Outcome != pipeline.Delivered || n.Load() < 2 {
		t.Fatalf("%v after %d attempts, want delivery after the hanging one", st, n.Load())
	}
}

func TestResetConnectionIsRetried(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.(*net.TCPConn).SetLinger(0) // RST, not FIN
			conn.Close()
			return
		}
		w.WriteHeader(204)
	}))
	defer srv.Close()
	site := &pipeline.Site{ID: 1, Endpoint: srv.URL + "/event"}
	if st := client(t, atinternet.Config{}).Send(context.Background(), request(site, "v", 1)); st.Outcome != pipeline.Delivered || n.Load() != 2 {
		t.Fatalf("%v after %d attempts", st, n.Load())
	}
}

func TestCancelledContextIsTransient(t *testing.T) {
	srv, _ := collector(503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503)
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	site := &pipeline.Site{ID: 1, Endpoint: srv.URL + "/event"}
	st := client(t, atinternet.Config{}).Send(ctx, request(site, "v", 1))
	if st.Outcome != pipeline.RetryLater || !errors.Is(st.Err, context.Canceled) {
		t.Fatalf("%+v, want retry later with the context's error", st)
	}
}

func TestKeepAliveReusesConnections(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	c := client(t, atinternet.Config{})
	site := &pipeline.Site{ID: 1, Endpoint: srv.URL + "/event"}
	for range 20 {
		if st := c.Send(context.Background(), request(site, "v", 1)); st.Outcome != pipeline.Delivered {
			t.Fatal(st)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Fatalf("%d connections for 20 sequential requests, want 1", conns)
	}
}

func TestHTTP2OverTLS(t *testing.T) {
	var proto atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proto.Store(int32(r.ProtoMajor))
		w.WriteHeader(204)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	tr := srv.Client().Transport.(*http.Transport)
	defer tr.CloseIdleConnections()
	site := &pipeline.Site{ID: 1, Endpoint: srv.URL + "/event"}
	if st := client(t, atinternet.Config{Transport: tr}).Send(context.Background(), request(site, "v", 1)); st.Outcome != pipeline.Delivered {
		t.Fatal(st)
	}
	if proto.Load() != 2 {
		t.Fatalf("request went over HTTP/%d, want HTTP/2", proto.Load())
	}
}

func TestEncodeValidJSON(t *testing.T) {
	h := &pipeline.Hit{Name: "x.y", Props: []pipeline.Prop{
		{Key: "s", Value: pipeline.String("quote\" back\\ nl\n tab\t ctl\x01 bad\xff é <>&")},
		{Key: "i", Value: pipeline.Int(-42)},
		{Key: "f", Value: pipeline.Float(1e15)},
		{Key: "b", Value: pipeline.Bool(true)},
	}}
	atinternet.Encode(h)
	var got struct {
		Name string         `json:"name"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(h.Body, &got); err != nil {
		t.Fatalf("invalid JSON %s: %v", h.Body, err)
	}
	if got.Name != "x.y" || got.Data["s"] != "quote\" back\\ nl\n tab\t ctl\x01 bad\ufffd é <>&" || got.Data["i"] != -42.0 || got.Data["f"] != 1e15 || got.Data["b"] != true {
		t.Fatalf("round trip: %+v", got)
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("subscription_started", "plan", "monthly \"x\"", int64(3), 4.99, true)
	f.Fuzz(func(t *testing.T, name, key, s string, i int64, fl float64, b bool) {
		h := &pipeline.Hit{Name: name, Props: []pipeline.Prop{
			{Key: key, Value: pipeline.String(s)}, {Key: "i", Value: pipeline.Int(i)},
			{Key: "f", Value: pipeline.Float(fl)}, {Key: "b", Value: pipeline.Bool(b)},
		}}
		atinternet.Encode(h)
		if !json.Valid(h.Body) {
			t.Fatalf("invalid JSON: %q", h.Body)
		}
		var got struct {
			Name string `json:"name"`
		}
		json.Unmarshal(h.Body, &got)
		// encoding/json is the reference: it replaces each invalid byte
		// with U+FFFD, as Encode does.
		ref, _ := json.Marshal(name)
		var want string
		json.Unmarshal(ref, &want)
		if got.Name != want {
			t.Fatalf("name %q round-tripped as %q, encoding/json gives %q", name, got.Name, want)
		}
	})
}

func benchHit() *pipeline.Hit {
	h := &pipeline.Hit{Name: "subscription_started"}
	for _, k := range []string{"event_id", "event_date", "purchasely_event", "user_id", "app_id", "environment", "store", "store_country", "product", "plan", "offer_type", "currency", "subscription_status", "store_transaction_id", "purchasely_subscription_id", "placement"} {
		h.Props = append(h.Props, pipeline.Prop{Key: k, Value: pipeline.String("value-of-" + k)})
	}
	h.Props = append(h.Props, pipeline.Prop{Key: "plan_price", Value: pipeline.Float(9.99)}, pipeline.Prop{Key: "is_family_shared", Value: pipeline.Bool(false)})
	return h
}

func BenchmarkEncode(b *testing.B) {
	h := benchHit()
	b.ReportAllocs()
	for b.Loop() {
		atinternet.Encode(h)
	}
}

// BenchmarkEncodeJSONMap is the baseline: encoding/json on the same event as
// a map.
func BenchmarkEncodeJSONMap(b *testing.B) {
	h := benchHit()
	b.ReportAllocs()
	for b.Loop() {
		data := make(map[string]any, len(h.Props))
		for _, p := range h.Props {
			switch p.Value.Kind {
			case pipeline.KindString:
				data[p.Key] = p.Value.Str
			case pipeline.KindFloat:
				data[p.Key] = p.Value.Float
			case pipeline.KindBool:
				data[p.Key] = p.Value.Bool
			}
		}
		if _, err := json.Marshal(map[string]any{"name": h.Name, "data": data}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSendLocal(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(204)
	}))
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	c := atinternet.NewClient(atinternet.Config{Concurrency: 16, Transport: tr, UserAgent: "atrelay/bench"})
	site := &pipeline.Site{ID: 1, Endpoint: srv.URL + "/event"}
	req := request(site, "visitor", 1)
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if st := c.Send(context.Background(), req); st.Outcome != pipeline.Delivered {
				b.Error(st)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

// TestTransportFailuresAreRetried: failures without a response that
// retryablehttp's default policy gives up on — a redirect loop ("stopped
// after 10 redirects"), a certificate that fails verification — are retried
// like any transient failure, counted with their reason, until the
// collector answers.
// Mutation caught: checkRetry deferring to retryablehttp.DefaultRetryPolicy
// for transport errors (Send returns RetryLater after one attempt).
func TestTransportFailuresAreRetried(t *testing.T) {
	tests := []struct {
		reason string
		start  func(t *testing.T, failing func() bool) (url string, tr http.RoundTripper)
	}{
		{"redirects", func(t *testing.T, failing func() bool) (string, http.RoundTripper) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if failing() {
					http.Redirect(w, r, r.URL.String(), http.StatusTemporaryRedirect)
					return
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			t.Cleanup(srv.Close)
			return srv.URL, nil
		}},
		{"tls", func(t *testing.T, failing func() bool) (string, http.RoundTripper) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
			srv.StartTLS()
			t.Cleanup(srv.Close)
			good, bad := srv.TLS.Certificates[0], testtls.Untrusted(t)
			srv.TLS.Certificates = nil
			srv.TLS.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				if failing() {
					return bad, nil
				}
				return &good, nil
			}
			tr := srv.Client().Transport.(*http.Transport)
			t.Cleanup(tr.CloseIdleConnections)
			return srv.URL, tr
		}},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			var seen atomic.Int32
			url, tr := tt.start(t, func() bool { return seen.Load() < 3 })
			c := client(t, atinternet.Config{Transport: tr, OnRetry: func(_ *pipeline.Site, reason string) {
				if reason == tt.reason {
					seen.Add(1)
				}
			}})
			st := c.Send(context.Background(), request(&pipeline.Site{ID: 1, Endpoint: url + "/event"}, "v", 1))
			if st.Outcome != pipeline.Delivered || seen.Load() < 3 {
				t.Fatalf("%+v after %d %s failures, want delivered after 3", st, seen.Load(), tt.reason)
			}
		})
	}
}

// TestErrorReason labels failures without a response.
func TestErrorReason(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "connection_refused"},
		{&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, "dns"},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), "reset"},
		{context.DeadlineExceeded, "timeout"},
		{&tls.CertificateVerificationError{Err: errors.New("x509: unknown authority")}, "tls"},
		{errors.New(`Post "http://h/x": stopped after 10 redirects`), "redirects"},
		{errors.New("something else"), "connection"},
	}
	for _, tt := range tests {
		if got := atinternet.ErrorReason(tt.err); got != tt.want {
			t.Errorf("ErrorReason(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
