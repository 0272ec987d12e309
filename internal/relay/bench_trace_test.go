package relay_test

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkEndToEndTraced is BenchmarkEndToEnd with tracing on: every span
// is recorded and handed, in batches, to an exporter that discards them, so
// that the figures are the cost of tracing in the service (starting, ending
// and batching the spans), not of an exporter's network.
func BenchmarkEndToEndTraced(b *testing.B) {
	for _, w := range []struct {
		name       string
		perVisitor int
	}{{"per-visitor", 1}, {"replay", 20}} {
		b.Run(w.name, func(b *testing.B) {
			tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter(), sdktrace.WithMaxQueueSize(1<<16)))
			defer tp.Shutdown(b.Context())
			benchEndToEndTraced(b, b.N, w.perVisitor, 50000, tp)
		})
	}
}
