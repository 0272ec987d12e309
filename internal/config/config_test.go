package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/pipeline"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// TestBadFiles checks that every testdata/*.bad.yaml fails with the error
// its first line announces.
func TestBadFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) < 25 {
		t.Fatalf("only %d bad files", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".bad.yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := bytes.Cut(data, []byte("\n"))
			want, ok := strings.CutPrefix(string(first), "# want: ")
			if !ok {
				t.Fatal("first line is not '# want: <error>'")
			}
			_, err = Parse(data, env(nil))
			if err == nil {
				t.Fatal("parsed without error")
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, want)
			}
		})
	}
}

func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("../../deploy/atrelay.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data, env(map[string]string{"KAFKA_PASSWORD": "hunter2"}))
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Integrations[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"dlq", cfg.Kafka.DLQTopic, "purchasely.subscription-events.dlq"},
		{"password", cfg.Kafka.SASL.Password.Reveal(), "hunter2"},
		{"linger", cfg.Delivery.Batch.Linger, 200 * time.Millisecond},
		{"backoff max", cfg.Delivery.Relay.Backoff.Max, 30 * time.Second},
		{"site", in.SiteID, int64(123456)},
		{"override", in.EventNames["SUBSCRIPTION_STARTED"], "subscription.started"},
		{"static", in.Properties.Static["app_name"], "My App"},
		{"enabled", in.IsEnabled(), true},
	}
	for _, c := range checks {
		if fmt.Sprint(c.got) != fmt.Sprint(c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	ep, plain, err := in.Endpoint()
	if err != nil || ep != "https://logs1412.xiti.com/subscription" || plain {
		t.Errorf("Endpoint() = %q, %v, %v", ep, plain, err)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`
kafka: {brokers: ["b:9092"], topic: t, group: g}
integrations:
  - {name: a, app_id: x, site_id: 1, collect_domain: "http://127.0.0.1:8080", events: [TRIAL_STARTED], enabled: false}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	in := cfg.Integrations[0]
	if cfg.Kafka.DLQTopic != "t.dlq" || cfg.Kafka.StartFrom != "earliest" || cfg.Codec.Framing != "auto" ||
		cfg.Delivery.Batch.MaxEvents != 500 || cfg.Delivery.Relay.MaxBufferedEvents != 50000 || cfg.Delivery.Relay.ShutdownTimeout != 30*time.Second ||
		in.CollectPath != "event" || in.Environments[0] != "PRODUCTION" || in.IDClientFrom[0] != "attribute:at_internet_id_client" ||
		in.IsEnabled() || cfg.Telemetry.MetricsListen != "127.0.0.1:9464" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	ep, plain, _ := in.Endpoint()
	if ep != "http://127.0.0.1:8080/event" || !plain {
		t.Fatalf("Endpoint() = %q, %v", ep, plain)
	}
}

func TestAllErrorsAtOnce(t *testing.T) {
	_, err := Parse([]byte(`
kafka: {brokers: ["b:9092"], topic: t, group: g}
integrations:
  - {name: a, app_id: x, site_id: 0, collect_domain: d, events: []}
`), env(nil))
	var fe *fielderr.Error
	if !errors.As(err, &fe) {
		t.Fatalf("err = %v, want a *fielderr.Error", err)
	}
	for _, want := range []string{"integrations[0].site_id: must be a positive integer", "integrations[0].events: at least one event name is required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	cfg, err := Parse([]byte(`
kafka: {brokers: ["b:9092"], topic: t, group: g, sasl: {mechanism: PLAIN, username: u, password: "${PW}"}}
codec: {schema_registry: {url: "http://r:8081", username: u, password: s3cr3t-registry}}
integrations:
  - {name: a, app_id: x, site_id: 1, collect_domain: d, events: [TRIAL_STARTED]}
`), env(map[string]string{"PW": "s3cr3t-kafka"}))
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg)
	y, _ := yaml.Marshal(cfg)
	j, _ := json.Marshal(cfg)
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", cfg), "%+v": fmt.Sprintf("%+v", cfg), "%#v": fmt.Sprintf("%#v", cfg),
		"slog": logged.String(), "yaml": string(y), "json": string(j),
	}
	for name, out := range outputs {
		if strings.Contains(out, "s3cr3t") {
			t.Errorf("%s output leaks a secret: %s", name, out)
		}
	}
	if !strings.Contains(string(y), "<redacted>") {
		t.Errorf("yaml output does not show <redacted>: %s", y)
	}
	if cfg.Kafka.SASL.Password.Reveal() != "s3cr3t-kafka" {
		t.Error("Reveal lost the value")
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	files = append(files, "../../deploy/atrelay.example.yaml")
	for _, file := range files {
		data, _ := os.ReadFile(file)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, env(map[string]string{"KAFKA_PASSWORD": "x"}))
		if err != nil {
			if cfg != nil {
				t.Fatal("returned a config with an error")
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("a parsed config does not re-validate: %v", err)
		}
		// `atrelay check` and the service must agree: what Parse accepts,
		// the pipeline compiles (they once checked the same rules in two
		// places, and disagreed on `attribute:` with no name).
		if _, err := pipeline.Compile(cfg.Integrations); err != nil {
			t.Fatalf("a parsed config does not compile: %v", err)
		}
	})
}

func ExampleParse_fieldError() {
	_, err := Parse([]byte(`
kafka: {brokers: ["b:9092"], topic: t, group: g}
integrations:
  - {name: a, app_id: x, site_id: -4, collect_domain: logs1.xiti.com, events: [TRIAL_STARTED]}
`), func(string) (string, bool) { return "", false })
	fmt.Println(err)
	// Output:
	// integrations[0].site_id: must be a positive integer
}
