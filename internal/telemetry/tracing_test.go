package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/atrelay/atrelay/internal/telemetry"
)

// TestTracerProviderFollowsEnv: the tracer provider's resource is named by
// OTEL_SERVICE_NAME, else by a service.name in OTEL_RESOURCE_ATTRIBUTES,
// else by the configuration's service_name, and carries
// OTEL_RESOURCE_ATTRIBUTES' other attributes; its sampler is
// OTEL_TRACES_SAMPLER's (always_off: nothing sampled), else parent-based
// always-on.
// Mutations caught (each tried once): the resource without
// resource.WithFromEnv (the configuration's name wins over both
// variables, as before); the configuration's attributes detected after
// the variables (OTEL_SERVICE_NAME loses); sdktrace.WithSampler(
// AlwaysSample()) in Setup (always_off samples).
func TestTracerProviderFollowsEnv(t *testing.T) {
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer otlp.Close()
	for _, tt := range []struct {
		name                  string
		serviceName, resAttrs string
		sampler               string
		wantName, wantEnv     string
		wantSampled           bool
	}{
		{name: "configuration", wantName: "atrelay-cfg", wantSampled: true},
		{name: "OTEL_RESOURCE_ATTRIBUTES", resAttrs: "service.name=from-attrs,deployment.environment.name=prod",
			wantName: "from-attrs", wantEnv: "prod", wantSampled: true},
		{name: "OTEL_SERVICE_NAME", serviceName: "atrelay-eu", resAttrs: "service.name=from-attrs,deployment.environment.name=prod",
			wantName: "atrelay-eu", wantEnv: "prod", wantSampled: true},
		{name: "OTEL_TRACES_SAMPLER", sampler: "always_off", wantName: "atrelay-cfg"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", otlp.URL+"/v1/traces")
			t.Setenv("OTEL_SERVICE_NAME", tt.serviceName)
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tt.resAttrs)
			t.Setenv("OTEL_TRACES_SAMPLER", tt.sampler)
			tel, err := telemetry.Setup(telemetry.Options{ServiceName: "atrelay-cfg", Version: "test"})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = tel.Shutdown(ctx)
			}()
			rec := tracetest.NewSpanRecorder()
			tel.Tracing.RegisterSpanProcessor(rec)
			_, span := tel.Tracing.Tracer("test").Start(context.Background(), "span")
			sampled := span.SpanContext().IsSampled()
			span.End()
			if sampled != tt.wantSampled {
				t.Errorf("sampled %v, want %v", sampled, tt.wantSampled)
			}
			var ended []sdktrace.ReadOnlySpan = rec.Ended()
			if len(ended) != 1 {
				if tt.wantSampled {
					t.Fatalf("%d spans recorded", len(ended))
				}
				return
			}
			got := map[string]string{}
			for _, kv := range ended[0].Resource().Attributes() {
				got[string(kv.Key)] = kv.Value.Emit()
			}
			if got["service.name"] != tt.wantName || got["deployment.environment.name"] != tt.wantEnv || got["service.version"] != "test" {
				t.Errorf("resource %v: want service.name %q, deployment.environment.name %q, service.version test", got, tt.wantName, tt.wantEnv)
			}
		})
	}
}
