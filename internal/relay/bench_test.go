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
	"strconv"
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
		b.Run(w.name, func(b *testing.B) { benchEndToEnd(b, b.N, w.perVisitor, 50000) })
	}
}

// BenchmarkBacklog1M processes a backlog of 1,000,000 records with
// max_buffered_events 50000. It is long, so it runs only with
// ATRELAY_BENCH_BACKLOG=1 (make bench-backlog).
func BenchmarkBacklog1M(b *testing.B) {
	if os.Getenv("ATRELAY_BENCH_BACKLOG") == "" {
		b.Skip("set ATRELAY_BENCH_BACKLOG=1 (make bench-backlog)")
	}
	for range b.N {
		benchEndToEnd(b, 1_000_000, 20, 50000)
	}
}

func benchEndToEnd(b *testing.B, n, perVisitor, maxBuffered int) {
	benchEndToEndTraced(b, n, perVisitor, maxBuffered, nil)
}

// benchEndToEndTraced is benchEndToEnd with the service traced by tp (nil:
// not traced).
func benchEndToEndTraced(b *testing.B, n, perVisitor, maxBuffered int, tp trace.TracerProvider) {
	const partitions = 6
	kafka := testkafka.New(b)
	topic := kafka.Name(b, "bench")
	kafka.CreateTopic(b, topic, partitions)
	kafka.CreateTopic(b, topic+".dlq", 1)
	brokers := kafka.Brokers()
	reg := srfake.New()
	defer reg.Close()
	reg.SeedSchema(topic+"-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	collect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf [4096]byte
		for {
			if _, err := r.Body.Read(buf[:]); err != nil {
				break
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer collect.Close()

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

	text := fmt.Sprintf(`
kafka: {brokers: [%q], topic: %s, group: %s}
codec: {schema_registry: {url: %q}}
delivery: {max_events: 500, linger: 20ms, concurrency: 16, max_buffered_events: %d, commit_interval: 200ms}
integrations:
  - {name: news, app_id: %s, site_id: 1, collect_domain: %q, environments: [PRODUCTION, SANDBOX],
     events: [%s]}
telemetry: {metrics_listen: "off", health_listen: "off"}
`, brokers[0], topic, kafka.Name(b, "group"), reg.URL(), maxBuffered, fixture.AppNews, collect.URL, join(append(fixture.TableEvents, fixture.OtherEvents...)))
	cfg, err := config.Parse([]byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	debug.FreeOSMemory()
	resetPeakRSS() // measure the service, not the producing above
	m := newCounter()
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
	for m.get("delivered", "") < int64(n) {
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
