package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/schemas"
)

// BenchmarkEndToEnd runs b.N events through kfake -> the service -> a local
// collector answering 204, and reports events/s, CPU time per event of the
// whole process, and its peak RSS while the service runs. On kfake the
// broker lives in this process and both figures include it; with
// ATRELAY_TEST_BROKERS (make bench-e2e-kafka) they are the service's alone.
// Workloads: per-visitor (each visitor one event: one request per event) and
// replay (about 20 events per visitor, merged into few requests).
func BenchmarkEndToEnd(b *testing.B) {
	for _, w := range []struct {
		name       string
		perVisitor int
	}{{"per-visitor", 1}, {"replay", 20}} {
		b.Run(w.name, func(b *testing.B) { benchEndToEnd(b, b.N, w.perVisitor, benchMaxBuffered(b)) })
	}
}

// BenchmarkBacklog1M processes a backlog of 1,000,000 records with the
// default max_buffered_events. It is long, so it runs only with
// ATRELAY_BENCH_BACKLOG=1 (make bench-backlog).
func BenchmarkBacklog1M(b *testing.B) {
	if os.Getenv("ATRELAY_BENCH_BACKLOG") == "" {
		b.Skip("set ATRELAY_BENCH_BACKLOG=1 (make bench-backlog)")
	}
	for range b.N {
		benchEndToEnd(b, 1_000_000, 20, benchMaxBuffered(b))
	}
}

// benchMaxBuffered is the max_buffered_events of the end-to-end benchmarks:
// ATRELAY_BENCH_MAX_BUFFERED, or 0 for the default (the key left unset), so
// that the throughput and memory table can be measured for a few values.
func benchMaxBuffered(b *testing.B) int {
	v := os.Getenv("ATRELAY_BENCH_MAX_BUFFERED")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("ATRELAY_BENCH_MAX_BUFFERED=%q: want a positive number", v)
	}
	return n
}

func benchEndToEnd(b *testing.B, n, perVisitor, maxBuffered int) {
	benchEndToEndTraced(b, n, perVisitor, maxBuffered, nil)
}

// benchEndToEndTraced is benchEndToEnd with the service traced by tp (nil:
// not traced).
func benchEndToEndTraced(b *testing.B, n, perVisitor, maxBuffered int, tp trace.TracerProvider) {
	benchRun(b, benchOptions{n: n, perVisitor: perVisitor, maxBuffered: maxBuffered, tp: tp})
}

// BenchmarkBufferedHeap measures what a buffered record costs: a collector
// that holds every request lets nothing settle, so the buffer fills to
// max_buffered_events; the live heap is read then, for two buffer sizes,
// and the difference per record is reported (live-B/buffered), with what
// the heap holds besides the buffer (live-MB-fixed). Both are the live
// heap after a full collection, so they do not depend on the collector's
// timing; the memory limit is off. On kfake, the broker's copy of the
// extra records counts too (about 0.4 KiB each): the figures are the
// service's alone with a real broker (deploy/kafka/with-broker.sh). With
// ATRELAY_BENCH_HEAPPROFILE, the heap profile of the larger buffer is
// written.
func BenchmarkBufferedHeap(b *testing.B) {
	const small, large = 5000, 20000
	b.Setenv("ATRELAY_BENCH_MEMLIMIT", "off")
	var heap [2]float64
	for range b.N {
		for i, n := range []int{small, large} {
			heap[i] = benchRun(b, benchOptions{n: n + 1000, perVisitor: 20, maxBuffered: n, hold: true})
		}
	}
	perEvent := (heap[1] - heap[0]) / (large - small)
	b.ReportMetric(perEvent, "live-B/buffered")
	b.ReportMetric((heap[0]-perEvent*small)/(1<<20), "live-MB-fixed")
}

// benchOptions shape one end-to-end run.
type benchOptions struct {
	n, perVisitor, maxBuffered int
	tp                         trace.TracerProvider // nil: not traced
	// hold makes the collector hold every request until the buffer is
	// full; the run then returns the live heap, in bytes, instead of
	// delivering the n events.
	hold bool
}

// consumedCounter is the test counter that also counts the records the
// relay started processing.
type consumedCounter struct {
	*counter
	consumed atomic.Int64
}

func (c *consumedCounter) Consumed(context.Context, string, int32) { c.consumed.Add(1) }

func benchRun(b *testing.B, o benchOptions) (liveHeap float64) {
	n, perVisitor, maxBuffered, tp := o.n, o.perVisitor, o.maxBuffered, o.tp
	const partitions = 6
	kafka := testkafka.New(b)
	topic := kafka.Name(b, "bench")
	kafka.CreateTopic(b, topic, partitions)
	kafka.CreateTopic(b, topic+".dlq", 1)
	brokers := kafka.Brokers()
	reg := srfake.New()
	defer reg.Close()
	reg.SeedSchema(topic+"-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	release := make(chan struct{}) // closed: the collector answers
	if !o.hold {
		close(release)
	}
	collect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		var buf [4096]byte
		for {
			if _, err := r.Body.Read(buf[:]); err != nil {
				break
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer collect.Close()
	defer func() {
		if o.hold {
			close(release)
		}
	}()

	// Every event is deliverable: one app, production, with an idclient.
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()), kgo.ProducerLinger(10*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	enc := fixture.MustEncoder("")
	const chunk = 50000
	for done := 0; done < n; done += chunk {
		events := fixture.Generate(fixture.Options{Seed: uint64(done), Events: min(chunk, n-done), EventsPerVisitor: perVisitor,
			Apps: []string{fixture.AppNews}, SandboxShare: -1, NoIDClientShare: -1})
		recs := make([]*kgo.Record, len(events))
		for i := range events {
			h := fnv.New32a()
			h.Write([]byte(events[i].AnonymousUserID))
			recs[i] = &kgo.Record{Topic: topic, Partition: int32(h.Sum32() % partitions), Value: enc.Confluent(schemaID, &events[i])}
		}
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	prod.Close()

	buffered := "" // the default
	if maxBuffered > 0 {
		buffered = fmt.Sprintf(", max_buffered_events: %d", maxBuffered)
	}
	text := fmt.Sprintf(`
kafka: {brokers: [%q], topic: %s, group: %s}
codec: {schema_registry: {url: %q}}
delivery: {max_events: 500, linger: 20ms, concurrency: 16, commit_interval: 200ms%s}
integrations:
  - {name: news, app_id: %s, site_id: 1, collect_domain: %q, environments: [PRODUCTION, SANDBOX],
     events: [%s]}
telemetry: {metrics_listen: "off", health_listen: "off"}
`, brokers[0], topic, kafka.Name(b, "group"), reg.URL(), buffered, fixture.AppNews, collect.URL, join(append(fixture.TableEvents, fixture.OtherEvents...)))
	cfg, err := config.Parse([]byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	// The memory limit atrelay run sets without a container limit (or
	// GOMEMLIMIT), unless ATRELAY_BENCH_MEMLIMIT=off. On kfake, the broker's
	// records count against it too.
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set && os.Getenv("ATRELAY_BENCH_MEMLIMIT") != "off" {
		prev := debug.SetMemoryLimit(cfg.Delivery.Relay.MemoryLimit())
		defer debug.SetMemoryLimit(prev)
	}
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS() // measure the service, not the producing above
	m := &consumedCounter{counter: newCounter()}
	svc, err := app.Build(cfg, app.Options{Metrics: m, TracerProvider: tp})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	go func() { done <- svc.Run(ctx) }()
	if o.hold {
		// Polling the count until a bounded deadline: the buffer is full
		// once the relay has taken max_buffered_events records, since
		// none settles.
		deadline := time.After(5 * time.Minute)
		tick := time.NewTicker(10 * time.Millisecond)
		for m.consumed.Load() < int64(maxBuffered) {
			select {
			case <-tick.C:
			case <-deadline:
				b.Fatalf("buffered %d of %d", m.consumed.Load(), maxBuffered)
			}
		}
		tick.Stop()
		b.StopTimer()
		if path := os.Getenv("ATRELAY_BENCH_HEAPPROFILE"); path != "" {
			writeHeapProfile(b, path)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		cancel()
		close(release)
		o.hold = false
		<-done
		return float64(ms.HeapAlloc)
	}
	heapProfile := os.Getenv("ATRELAY_BENCH_HEAPPROFILE")
	for m.get("delivered", "") < int64(n) {
		if heapProfile != "" && m.get("delivered", "") >= int64(n/2) {
			writeHeapProfile(b, heapProfile)
			heapProfile = ""
		}
		select {
		case <-m.commits:
		case err := <-done:
			b.Fatalf("service stopped: %v", err)
		case <-time.After(5 * time.Minute):
			b.Fatalf("delivered %d of %d", m.get("delivered", ""), n)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	cancel()
	<-done
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/event")
	b.ReportMetric(peakRSSMB(), "peak-RSS-MB")
	return 0
}

// writeHeapProfile writes the live heap (as of the last collection) to
// path: with ATRELAY_BENCH_HEAPPROFILE, the end-to-end benchmarks write it
// once half the events are delivered, when the buffer is full.
func writeHeapProfile(b *testing.B, path string) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

func join(s []string) string {
	var buf bytes.Buffer
	for i, x := range s {
		if i > 0 {
			buf.WriteString(", ")
		}
		buf.WriteString(x)
	}
	return buf.String()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets VmHWM (Linux: writing 5 to clear_refs).
func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// peakRSSMB reads VmHWM, the process's peak resident set, from /proc.
func peakRSSMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "VmHWM:" {
			kb, _ := strconv.ParseFloat(string(f[1]), 64)
			return kb / 1024
		}
	}
	return 0
}
