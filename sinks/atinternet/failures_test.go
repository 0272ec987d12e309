package atinternet_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/testtls"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// lockedBuffer is a log destination shared by the client's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestFailureKindsAreVisible runs one collect request against a collector
// that fails in one way for 35 s of synctest's fake time, then answers 204.
// Every failed attempt must be counted with its reason and timed (status 0:
// no response), and the log must hold exactly one first-failure line
// naming the endpoint and the error, at most one summary per 10 s, and one
// recovery line — whatever the failure, with or without a response.
//
// Mutations caught (each tried once): the failure log's period at 1 s
// instead of failurelog.DefaultPeriod (35 summaries); checkRetry no longer
// reporting failures without a response (no first line, no reasons: the
// state of the operator trial); ErrorReason returning "connection" for
// everything (the reason rows fail).
func TestFailureKindsAreVisible(t *testing.T) {
	ok204 := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	healthyHTTP := httptest.NewServer(ok204)
	defer healthyHTTP.Close()
	healthyTLS := httptest.NewTLSServer(ok204)
	defer healthyTLS.Close()
	trusted := x509.NewCertPool()
	trusted.AddCert(healthyTLS.Certificate())

	// A closed port: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	// A server whose certificate no client trusts.
	untrusted := httptest.NewUnstartedServer(ok204)
	untrusted.TLS = &tls.Config{Certificates: []tls.Certificate{*testtls.Untrusted(t)}}
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake errors are the point
	untrusted.StartTLS()
	defer untrusted.Close()

	// A server that resets every connection.
	resetter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer resetter.Close()
	go func() {
		for {
			c, err := resetter.Accept()
			if err != nil {
				return
			}
			io.ReadFull(c, make([]byte, 1)) // wait for the request
			c.(*net.TCPConn).SetLinger(0)   // close with RST
			c.Close()
		}
	}()

	noDNS := &net.Dialer{Resolver: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no name server in tests")
	}}}
	var d net.Dialer

	for _, tc := range []struct {
		name, reason, scheme string
		// fail dials the failing collector (addr is the URL's host:port).
		fail func(ctx context.Context, addr string) (net.Conn, error)
	}{
		{"closed port", "connection_refused", "http", func(ctx context.Context, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", closed)
		}},
		{"name that does not resolve", "dns", "http", func(ctx context.Context, addr string) (net.Conn, error) {
			return noDNS.DialContext(ctx, "tcp", addr)
		}},
		{"self-signed certificate", "tls", "https", func(ctx context.Context, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", untrusted.Listener.Addr().String())
		}},
		{"server that never answers", "timeout", "http", func(context.Context, string) (net.Conn, error) {
			// In memory, so that synctest's clock runs while the client
			// waits: the server reads the request and never answers.
			cli, srv := net.Pipe()
			go func() { io.Copy(io.Discard, srv); srv.Close() }()
			return cli, nil
		}},
		{"server that resets", "reset", "http", func(ctx context.Context, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", resetter.Addr().String())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var healthy atomic.Bool
				tr := &http.Transport{
					TLSClientConfig: &tls.Config{RootCAs: trusted},
					DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
						if !healthy.Load() {
							return tc.fail(ctx, addr)
						}
						if tc.scheme == "https" {
							return d.DialContext(ctx, "tcp", healthyTLS.Listener.Addr().String())
						}
						return d.DialContext(ctx, "tcp", healthyHTTP.Listener.Addr().String())
					},
				}
				var (
					mu       sync.Mutex
					reasons  = map[string]int{}
					attempts = map[int]int{} // by status
					logs     lockedBuffer
				)
				host := "127.0.0.1"
				if tc.reason == "dns" {
					host = "collector.invalid"
				}
				site := &pipeline.Site{Integration: "fitness", ID: 7, Endpoint: tc.scheme + "://" + host + "/event"}
				c := atinternet.NewClient(atinternet.Config{
					RequestTimeout: 2 * time.Second,
					Backoff:        backoff.Config{Min: 100 * time.Millisecond, Max: time.Second},
					MaxRetries:     -1,
					Transport:      tr,
					Logger:         slog.New(slog.NewTextHandler(&logs, nil)),
					OnRetry: func(_ *pipeline.Site, reason string) {
						mu.Lock()
						reasons[reason]++
						mu.Unlock()
					},
					OnResponse: func(_ *pipeline.Site, status int, _ time.Duration) {
						mu.Lock()
						attempts[status]++
						mu.Unlock()
					},
				})
				done := make(chan pipeline.Settlement, 1)
				go func() { done <- c.Send(context.Background(), request(site, "v1", 3)) }()
				time.Sleep(35 * time.Second)
				healthy.Store(true)
				s := <-done
				tr.CloseIdleConnections()
				if s.Outcome != pipeline.Delivered {
					t.Fatalf("settlement %v %s %v, want delivered once the collector recovers", s.Outcome, s.Reason, s.Err)
				}

				mu.Lock()
				defer mu.Unlock()
				if len(reasons) != 1 || reasons[tc.reason] < 5 {
					t.Errorf("retries by reason %v, want at least 5, all %q", reasons, tc.reason)
				}
				if attempts[0] != reasons[tc.reason] || attempts[204] != 1 {
					t.Errorf("attempts timed by status %v, want %d without a response and one 204", attempts, reasons[tc.reason])
				}
				out := logs.String()
				first := regexp.MustCompile(`level=WARN msg="collect request failed" integration=fitness site_id=7 endpoint=` +
					regexp.QuoteMeta(tc.scheme+"://"+host+"/event") + ` reason=` + tc.reason + ` attempt=\d+ failures=1 error=`)
				if n := len(first.FindAllString(out, -1)); n != 1 {
					t.Errorf("%d first-failure lines with the endpoint, reason and error, want 1:\n%s", n, out)
				}
				// 35 s of failures: summaries at 10, 20, 30 s at most.
				if n := strings.Count(out, `msg="collect request: `); n < 2 || n > 3 {
					t.Errorf("%d summary lines over 35 s, want 2 or 3 (at most one per 10 s):\n%s", n, out)
				}
				if !strings.Contains(out, "events_waiting=3") {
					t.Errorf("no summary says how many events wait:\n%s", out)
				}
				if n := strings.Count(out, `level=INFO msg="collect request recovered"`); n != 1 || !strings.Contains(out, "failing_for=") {
					t.Errorf("%d recovery lines (with failing_for), want 1:\n%s", n, out)
				}
				if n := strings.Count(out, "\n"); n > 5 {
					t.Errorf("%d log lines for one outage, want at most 5:\n%s", n, out)
				}
			})
		})
	}
}
