package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// body encodes a request body as atrelay writes it: each hit through
// atinternet.Encode, the request through atinternet.Body. A string value
// holds the bytes the counter looks for, escaped as the encoder escapes it.
func body(dates ...string) []byte {
	var hits []*pipeline.Hit
	for i, d := range dates {
		h := &pipeline.Hit{Name: "subscription_started", Props: []pipeline.Prop{
			{Key: "event_id", Value: pipeline.String("e" + strings.Repeat("x", i))},
			{Key: "note", Value: pipeline.String(`{"name":"fake","event_date":"2000-01-01T00:00:00.000Z"}`)},
			{Key: "event_date", Value: pipeline.String(d)},
			{Key: "n", Value: pipeline.Int(int64(i))},
		}}
		atinternet.Encode(h)
		hits = append(hits, h)
	}
	return atinternet.Body(hits)
}

// TestCountAndLatency counts the hits of real request bodies and reads
// their event_date; a property value holding the same bytes, escaped, is
// not counted. Mutations caught: counting every '{' (the data objects too)
// fails the counts; not counting an unreadable date fails "unreadable date".
func TestCountAndLatency(t *testing.T) {
	now := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		body    []byte
		events  int
		lat     []time.Duration
		badDate int
	}{
		{name: "one", body: body("2026-11-26T02:59:59.950Z"), events: 1, lat: []time.Duration{50 * time.Millisecond}},
		{name: "three", body: body("2026-11-26T02:59:59.000Z", "2026-11-26T02:59:59.999Z", "2026-11-26T03:00:00.000Z"), events: 3,
			lat: []time.Duration{time.Second, time.Millisecond, 0}},
		{name: "unreadable date", body: body("yesterday", "2026-11-26T02:59:58.000Z"), events: 2, lat: []time.Duration{2 * time.Second}, badDate: 1},
		{name: "empty", body: []byte(`{"events":[]}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := countEvents(tc.body); got != tc.events {
				t.Errorf("countEvents = %d, want %d in %s", got, tc.events, tc.body)
			}
			lat, bad := eventLatencies(tc.body, now)
			if len(lat) != len(tc.lat) || bad != tc.badDate {
				t.Fatalf("latencies %v, %d bad; want %v, %d bad", lat, bad, tc.lat, tc.badDate)
			}
			for i := range lat {
				if lat[i] != tc.lat[i] {
					t.Errorf("latency %d = %v, want %v", i, lat[i], tc.lat[i])
				}
			}
		})
	}
}

// TestCollectorServes posts hits to the collector's handler and reads its
// stats, then resets them. Mutation caught: a reset that leaves the
// latencies fails the last check.
func TestCollectorServes(t *testing.T) {
	srv := httptest.NewServer(&collector{latency: true})
	defer srv.Close()
	get := func() stats {
		t.Helper()
		resp, err := http.Get(srv.URL + "/stats?percentiles=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s stats
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	day := time.Now().UTC().Add(-time.Hour).Format("2006-01-02T15:04:05.000Z07:00")
	for _, b := range [][]byte{body(day), body(day, day, day)} {
		resp, err := http.Post(srv.URL+"/event?s=1&idclient=x", "text/plain;charset=UTF-8", strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("status %d, want 204", resp.StatusCode)
		}
	}
	s := get()
	if s.Events != 4 || s.Requests != 2 || s.Samples != 4 || s.P50ms < float64(time.Hour/time.Millisecond) {
		t.Errorf("stats %+v, want 4 events, 2 requests, 4 samples of at least an hour", s)
	}
	resp, err := http.Post(srv.URL+"/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := get(); s != (stats{}) {
		t.Errorf("after reset: %+v, want zero", s)
	}
}

// TestReadListening reads the collector's address line.
func TestReadListening(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: "listening 127.0.0.1:4321\n", want: "127.0.0.1:4321"},
		{in: "hello\n", wantErr: true},
		{in: "listening 127.0.0.1:1", wantErr: true}, // no newline: the process died mid-line
	} {
		got, err := readListening(strings.NewReader(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("readListening(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
