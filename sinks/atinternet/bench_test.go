package atinternet_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// BenchmarkSend sends one-event requests through a client built as the
// service builds it (its default transport), from concurrency goroutines
// per site — the relay's senders — to sites that share one collect host,
// as integrations on one collect domain do. Besides the allocations it
// reports the goroutines created and the connections opened per request:
// both are 0 once the connections are warm, unless the client's idle pool
// is smaller than what is in flight to the host.
func BenchmarkSend(b *testing.B) {
	for _, bc := range []struct {
		name   string
		sites  int
		events int
		traced bool
	}{
		{"sites=1", 1, 1, false},
		{"sites=4", 4, 1, false},
		{"events=20", 1, 20, false},
		{"traced", 1, 1, true},
	} {
		b.Run(bc.name, func(b *testing.B) { benchSend(b, bc.sites, bc.events, bc.traced) })
	}
}

func benchSend(b *testing.B, sites, events int, traced bool) {
	const concurrency = 16
	srv, conns := rawCollector(b)
	cfg := atinternet.Config{Concurrency: concurrency, UserAgent: "atrelay/bench", MaxRetries: -1}
	if traced {
		tp := trace.NewTracerProvider(trace.WithBatcher(tracetest.NewNoopExporter(), trace.WithMaxQueueSize(1<<16)))
		defer tp.Shutdown(context.Background())
		cfg.TracerProvider = tp
	}
	c := atinternet.NewClient(cfg)
	defer c.CloseIdleConnections()
	reqs := make([]pipeline.Request, sites)
	for i := range reqs {
		reqs[i] = request(&pipeline.Site{ID: int64(600000 + i), Endpoint: srv + "/event"}, "visitor", events)
	}
	// Warm the pool: one round of every sender.
	send := func(n int) {
		var wg sync.WaitGroup
		var next atomic.Int64
		for i := range sites * concurrency {
			wg.Go(func() {
				req := reqs[i%sites]
				for next.Add(1) <= int64(n) {
					if st := c.Send(context.Background(), req); st.Outcome != pipeline.Delivered {
						b.Error(st)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	send(sites * concurrency)
	conns0, g0 := conns.Load(), goroutinesCreated()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	send(b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	// The senders themselves: sites*concurrency goroutines per send.
	g := goroutinesCreated() - g0 - uint64(sites*concurrency)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(g)/float64(b.N), "goroutines/op")
	b.ReportMetric(float64(conns.Load()-conns0)/float64(b.N), "conns/op")
}

// rawCollector is a collect server that answers every request 204 without
// net/http's server, so that what the benchmark counts — allocations,
// goroutines, CPU — is the client's alone (net/http's server allocates and
// starts a goroutine per request). It returns its URL and a count of the
// connections it accepted.
func rawCollector(b testing.TB) (string, *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var conns atomic.Int64
	var wg sync.WaitGroup
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Go(func() { serveRaw(conn) })
		}
	})
	return "http://" + ln.Addr().String(), &conns
}

// serveRaw answers each HTTP/1.1 request on conn with a 204, reading its
// headers and its Content-Length body, until the client closes it.
func serveRaw(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	const answer = "HTTP/1.1 204 No Content\r\n\r\n"
	for {
		length := 0
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
			}
		}
		if _, err := r.Discard(length); err != nil {
			return
		}
		if _, err := io.WriteString(conn, answer); err != nil {
			return
		}
	}
}

// goroutinesCreated is the number of goroutines the process has created.
func goroutinesCreated() uint64 {
	s := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		panic(fmt.Sprintf("metric %s: %v", s[0].Name, s[0].Value.Kind()))
	}
	return s[0].Value.Uint64()
}
