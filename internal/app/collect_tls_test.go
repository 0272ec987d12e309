package app_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/testtls"
)

// TestCollectCAFileThroughServe: the news integration's collect server has
// a certificate from a private CA. Without integrations[].tls.ca_file the
// service never sends it a hit: every attempt fails verification, counted
// in atrelay_http_client_retries_total{reason="tls"}. With the CA's file
// there, every event is delivered. The configuration key reaches the
// collect client that `atrelay run` builds, and the clients of `check
// --connect` and `send-test`, which agree with it.
//
// Mutations caught: Build not passing pipeline.CollectRoots to the client
// (sc.RootCAs left nil) fails the "ca_file" row: no hit, retries with
// reason tls (tried); checkConnect probing every endpoint with the shared
// system-roots client fails the "ca_file" row's check line (tried);
// SendTest building its client without the integration's roots fails the
// "ca_file" row's send-test (tried).
func TestCollectCAFileThroughServe(t *testing.T) {
	ca := testtls.NewCA(t)
	caFile := ca.File(t)
	retriesTLS := regexp.MustCompile(`atrelay_http_client_retries_total\{[^}]*reason="tls"[^}]*\} (\d+)`)
	for _, tt := range []struct {
		name    string
		caFile  string
		deliver bool
	}{{"system roots", "", false}, {"ca_file", caFile, true}} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, 1, 20)
			srv := httptest.NewUnstartedServer(w.collector)
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{*ca.Server(t)}}
			srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshakes
			srv.StartTLS()
			t.Cleanup(srv.Close)
			cfg := w.config(5 * time.Second)
			cfg.Integrations[0].CollectDomain = srv.URL
			cfg.Integrations[0].TLS.CAFile = tt.caFile
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			r := serve(t, cfg)
			if tt.deliver {
				w.waitDelivered(ctx)
			} else {
				metrics := "http://" + r.addr(t, "metrics") + "/metrics"
				counted := func() int {
					m := retriesTLS.FindStringSubmatch(get(t, metrics))
					if m == nil {
						return 0
					}
					n, _ := strconv.Atoi(m[1])
					return n
				}
				if !eventually(30*time.Second, func() bool { return counted() >= 3 }) {
					t.Fatalf("%d retries with reason tls, want at least 3\n%s", counted(), r.logs)
				}
				if n := len(w.collector.Hits()); n != 0 {
					t.Errorf("%d hits reached a server the client could not verify", n)
				}
			}
			r.stop(t, cfg.Delivery.Relay.ShutdownTimeout+closeGraceBound)

			// check --connect and send-test trust what the service trusts.
			var out strings.Builder
			_ = app.Check(ctx, cfg, true, &out)
			want := "FAIL collect endpoint " + srv.URL + "/event (news): TLS certificate rejected"
			if tt.deliver {
				want = "ok   collect endpoint " + srv.URL + "/event (news): reachable, TLS verified"
			}
			if !strings.Contains(out.String(), want) {
				t.Errorf("check --connect lacks %q:\n%s", want, out.String())
			}
			if err := app.SendTest(ctx, cfg, "news", io.Discard); (err == nil) != tt.deliver {
				t.Errorf("send-test: %v, want delivered %v", err, tt.deliver)
			}
		})
	}
}
