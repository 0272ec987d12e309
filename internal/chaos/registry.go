package chaos

import (
	"fmt"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/schemas"
)

// Schema ids in the registry: the current schema, and the previous one
// (schemas/subscription_event.v1.avsc), which a scenario uses to make the
// relay fetch a schema it has not cached.
const (
	schemaID   = 1
	schemaIDv1 = 2
)

// Registry is a Confluent schema registry (srfake) that a scenario can
// take down: while down it answers every other request 503 and resets the
// connection of the others.
type Registry struct {
	fake *srfake.Registry
	srv  *http.Server
	url  string
	down atomic.Bool
	// refused counts the requests refused while down.
	refused atomic.Int64
}

func newRegistry(subject string) (*Registry, error) {
	v1, err := schemas.FS.ReadFile("subscription_event.v1.avsc")
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	fake := srfake.NewRegistry()
	fake.SeedSchema(subject, 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	fake.SeedSchema(subject, 2, schemaIDv1, sr.Schema{Schema: string(v1), Type: sr.TypeAvro})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	r := &Registry{fake: fake, url: "http://" + ln.Addr().String()}
	handler := fake.Handler()
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !r.down.Load() {
			handler.ServeHTTP(w, req)
			return
		}
		if r.refused.Add(1)%2 == 0 {
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					conn.Close()
					return
				}
			}
		}
		http.Error(w, `{"error_code":50003,"message":"down for the chaos suite"}`, http.StatusServiceUnavailable)
	})}
	go r.srv.Serve(ln)
	return r, nil
}

// URL is the registry's address.
func (r *Registry) URL() string { return r.url }

// SetDown takes the registry down or brings it back.
func (r *Registry) SetDown(down bool) { r.down.Store(down) }

// Close stops it.
func (r *Registry) Close() { r.srv.Close() }
