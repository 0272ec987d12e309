package atinternet_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// wrapped is a transport in front of another, as the traced transport and
// the per-host roots of tls.ca_file are: net/http does not know it.
type wrapped struct{ base *http.Transport }

func (w wrapped) RoundTrip(r *http.Request) (*http.Response, error) { return w.base.RoundTrip(r) }

// TestNoGoroutinePerAttempt: in front of a transport net/http does not
// know, a request timeout built on http.Client.Timeout starts two
// goroutines an attempt (the client's timer and the transport's watch of
// Request.Cancel); the client's own attempt timeout starts none. The
// collector is rawCollector, which starts no goroutine per request either,
// so the process's goroutine count is the client's.
// Mutation caught: the client built with http.Client{Timeout:
// RequestTimeout} again (200 goroutines for 100 requests).
func TestNoGoroutinePerAttempt(t *testing.T) {
	url, _ := rawCollector(t)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := atinternet.NewClient(atinternet.Config{Transport: wrapped{tr}, UserAgent: "atrelay/test"})
	site := &pipeline.Site{ID: 1, Endpoint: url + "/event"}
	req := request(site, "v", 1)
	if st := c.Send(context.Background(), req); st.Outcome != pipeline.Delivered { // dials
		t.Fatal(st)
	}
	const n = 100
	g0 := goroutinesCreated()
	for range n {
		if st := c.Send(context.Background(), req); st.Outcome != pipeline.Delivered {
			t.Fatal(st)
		}
	}
	// A few, not one per request: a timer's callback or a redial.
	if g := goroutinesCreated() - g0; g > n/10 {
		t.Fatalf("%d goroutines started for %d requests on a warm connection", g, n)
	}
}

// TestSitesOnOneHostKeepTheirConnections: sites on one collect domain
// share its connections, so what is in flight to the host is the
// concurrency times its sites. The default transport keeps all of them
// alive: a second round of requests as concurrent as the first opens no
// connection. The collector holds each round's requests until all of them
// have arrived, so that every round has them all in flight at once.
// Mutation caught: MaxIdleConnsPerHost back to Concurrency (the second
// round dials the connections the first one closed: 8 of 12).
func TestSitesOnOneHostKeepTheirConnections(t *testing.T) {
	const concurrency, sites = 4, 3
	const inFlight = concurrency * sites
	var (
		mu      sync.Mutex
		arrived int
		release = make(chan struct{})
		conns   atomic.Int32
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		ch := release
		if arrived == inFlight { // the round is complete: release it, arm the next
			arrived = 0
			close(release)
			release = make(chan struct{})
		}
		mu.Unlock()
		<-ch
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := atinternet.NewClient(atinternet.Config{Concurrency: concurrency, UserAgent: "atrelay/test"})
	defer c.CloseIdleConnections()
	round := func() {
		var wg sync.WaitGroup
		for i := range inFlight {
			site := &pipeline.Site{ID: int64(i % sites), Endpoint: srv.URL + "/event"}
			wg.Go(func() {
				if st := c.Send(context.Background(), request(site, "v", 1)); st.Outcome != pipeline.Delivered {
					t.Error(st)
				}
			})
		}
		wg.Wait()
	}
	round()
	first := conns.Load()
	round()
	if opened := conns.Load() - first; opened != 0 {
		t.Fatalf("the second round opened %d connections (the first %d): the idle pool closed them", opened, first)
	}
}

// TestAttemptOutlivesItsResponseHeaders: an attempt's context (and its
// timeout) lasts until the response's body is read, not until its headers
// arrive. The collector sends a 400's headers, then its body only once the
// client has seen the headers (OnResponse), so the body is read after
// RoundTrip has returned.
// Mutation caught: attemptTimeout cancelling the attempt's context when
// RoundTrip returns (the body read fails: "context canceled", and the
// rejection loses the collector's message).
func TestAttemptOutlivesItsResponseHeaders(t *testing.T) {
	headersSeen := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "11")
		w.WriteHeader(http.StatusBadRequest)
		w.(http.Flusher).Flush()
		<-headersSeen
		_, _ = w.Write([]byte("bad event 7"))
	}))
	defer srv.Close()
	var once sync.Once
	c := client(t, atinternet.Config{OnResponse: func(*pipeline.Site, int, time.Duration) { once.Do(func() { close(headersSeen) }) }})
	st := c.Send(context.Background(), request(&pipeline.Site{ID: 1, Endpoint: srv.URL + "/event"}, "v", 1))
	if st.Outcome != pipeline.Rejected || !strings.Contains(st.Err.Error(), "bad event 7") {
		t.Fatalf("%v: want the rejection with the collector's message", st)
	}
}
