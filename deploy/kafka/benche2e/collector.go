package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// collector is the stand-in for Piano's collect server: it answers every
// hit request 204 at once, counts the events in it and, when it measures
// latency, keeps each event's delivery latency: the arrival time minus the
// event's event_date property, which the latency run sets to the record's
// Kafka timestamp. It runs in its own process (benche2e collector), so that
// its CPU is not atrelay's.
type collector struct {
	latency bool

	mu        sync.Mutex
	events    int64
	requests  int64
	bad       int64 // event_date missing or unreadable, latency mode only
	latencies []time.Duration
}

// stats is what GET /stats answers; percentiles are there only with
// ?percentiles=1, since they sort every sample.
type stats struct {
	Events   int64   `json:"events"`
	Requests int64   `json:"requests"`
	Bad      int64   `json:"bad_event_date"`
	Samples  int     `json:"samples"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// ServeHTTP serves GET /stats, POST /reset (forget every count and sample:
// the end of a warm-up), and any other request as a hit.
func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		c.serveStats(w, r.URL.Query().Get("percentiles") == "1")
		return
	case r.Method == http.MethodPost && r.URL.Path == "/reset":
		c.mu.Lock()
		c.events, c.requests, c.bad, c.latencies = 0, 0, 0, nil
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, err := io.ReadAll(r.Body)
	now := time.Now()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n := countEvents(body)
	var lat []time.Duration
	bad := 0
	if c.latency {
		lat, bad = eventLatencies(body, now)
	}
	c.mu.Lock()
	c.events += int64(n)
	c.requests++
	c.bad += int64(bad)
	c.latencies = append(c.latencies, lat...)
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (c *collector) serveStats(w http.ResponseWriter, withPercentiles bool) {
	c.mu.Lock()
	s := stats{Events: c.events, Requests: c.requests, Bad: c.bad, Samples: len(c.latencies)}
	var lat []time.Duration
	if withPercentiles {
		lat = append(lat, c.latencies...)
	}
	c.mu.Unlock()
	if len(lat) > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		s.P50ms, s.P99ms, s.MaxMs = ms(percentile(lat, 50)), ms(percentile(lat, 99)), ms(percentile(lat, 100))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s)
}

// hitStart opens every hit object in a request body as sinks/atinternet
// writes it ({"events":[{"name":…,"data":{…}},…]}): a property value holding
// the same bytes would have its quotes escaped, so counting it counts the
// events without decoding the JSON, which would cost the collector more CPU
// than atrelay spends on an event's encoding.
var hitStart = []byte(`{"name":`)

// countEvents returns the number of hits in a request body.
func countEvents(body []byte) int { return bytes.Count(body, hitStart) }

var eventDateKey = []byte(`"event_date":"`)

// eventLatencies returns, for each event_date property in body, now minus
// that time, and how many event_date values were unreadable.
func eventLatencies(body []byte, now time.Time) (lat []time.Duration, bad int) {
	for {
		i := bytes.Index(body, eventDateKey)
		if i < 0 {
			return lat, bad
		}
		body = body[i+len(eventDateKey):]
		j := bytes.IndexByte(body, '"')
		if j < 0 {
			return lat, bad + 1
		}
		t, err := time.Parse(time.RFC3339Nano, string(body[:j]))
		if err != nil {
			bad++
			continue
		}
		lat = append(lat, now.Sub(t))
	}
}

// runCollector serves a collector on listen until ctx ends, after writing
// "listening <addr>" to stdout for the driver to read.
func runCollector(ctx context.Context, listen string, latency bool, stdout io.Writer) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	srv := &http.Server{Handler: &collector{latency: latency}, ReadHeaderTimeout: 10 * time.Second}
	if _, err := fmt.Fprintf(stdout, "listening %s\n", ln.Addr()); err != nil {
		return fmt.Errorf("collector: %w", err)
	}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("collector: %w", err)
	}
	return nil
}

// readListening reads the collector's first stdout line, "listening ADDR".
func readListening(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("collector address: %w", err)
	}
	var addr string
	if _, err := fmt.Sscanf(line, "listening %s", &addr); err != nil {
		return "", fmt.Errorf("collector address: line %q: %w", line, err)
	}
	return addr, nil
}
