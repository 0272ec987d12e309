package atinternet_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/testtls"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// TestCollectCAFile: a collect server whose certificate a private CA
// signed. The client verifies TLS by default: with the system's roots
// (no ca_file), or with a ca_file given for another host, the request
// fails with x509's unknown authority, counted as reason tls, and nothing
// reaches the server; with the integration's tls.ca_file (through
// pipeline.CollectRoots, as the service builds it) it is delivered.
//
// Mutations caught: withRoots ignoring roots (returning base) fails the
// "ca_file" row with reason tls; hostRoots sending every request through
// the first CA transport, whatever its host, fails the "other host's
// ca_file" row (delivered).
func TestCollectCAFile(t *testing.T) {
	ca := testtls.NewCA(t)
	var mu sync.Mutex
	var received int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		received++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{*ca.Server(t)}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile := ca.File(t)
	other := httptest.NewTLSServer(http.NotFoundHandler())
	other.Close() // only its address matters

	roots := func(t *testing.T, collect string) map[string]*x509.CertPool {
		r, err := pipeline.CollectRoots([]pipeline.Integration{{CollectDomain: collect, TLS: pipeline.CollectTLS{CAFile: caFile}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name  string
		roots func(t *testing.T) map[string]*x509.CertPool
		want  pipeline.Outcome
	}{
		{"system roots", func(*testing.T) map[string]*x509.CertPool { return nil }, pipeline.RetryLater},
		{"other host's ca_file", func(t *testing.T) map[string]*x509.CertPool { return roots(t, other.URL) }, pipeline.RetryLater},
		{"ca_file", func(t *testing.T) map[string]*x509.CertPool { return roots(t, srv.URL) }, pipeline.Delivered},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			received = 0
			mu.Unlock()
			var reasons []string
			c := atinternet.NewClient(atinternet.Config{
				MaxRetries: 1, Backoff: backoff.Config{Min: 1, Max: 1}, RootCAs: tt.roots(t),
				OnRetry: func(_ *pipeline.Site, reason string) { reasons = append(reasons, reason) },
			})
			t.Cleanup(c.CloseIdleConnections)
			st := c.Send(context.Background(), request(&pipeline.Site{Integration: "private", ID: 1, Endpoint: srv.URL + "/event"}, "v", 1))
			if st.Outcome != tt.want {
				t.Fatalf("outcome %v (%s: %v), want %v", st.Outcome, st.Reason, st.Err, tt.want)
			}
			mu.Lock()
			got := received
			mu.Unlock()
			if tt.want == pipeline.Delivered {
				if got != 1 || len(reasons) != 0 {
					t.Errorf("the server received %d requests, retries %v; want 1 and none", got, reasons)
				}
				return
			}
			var unknown x509.UnknownAuthorityError
			if st.Reason != "tls" || !errors.As(st.Err, &unknown) {
				t.Errorf("reason %q err %v, want tls and x509's unknown authority", st.Reason, st.Err)
			}
			if len(reasons) == 0 || slices.ContainsFunc(reasons, func(r string) bool { return r != "tls" }) {
				t.Errorf("retries counted as %v, want tls only", reasons)
			}
			if got != 0 {
				t.Errorf("the server received %d requests through an unverified connection", got)
			}
		})
	}
}
