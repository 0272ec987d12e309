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

// TestBadFiles checks that every testdata/*.bad.yaml fails with exactly
// the errors its first lines announce ("# want: <error>", one line each):
// each announced error is reported, and nothing else (no rule broken only
// because a value could not be read).
//
// Mutations caught (each applied once, seen failing, reverted): returning
// the unknown keys before the rest (as Parse did) fails all_at_once;
// dropping report.rule's filter of unreadable paths fails
// site_id_not_number (it also reports "must be a positive integer") and
// five more; not marking a list whose element yaml dropped fails
// dropped_element; adding yaml's own type error (no key path) fails
// bad_duration and site_id_not_number; leaving a bad "${" as is fails
// bad_reference.
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
			var wants []string
			for line := range strings.Lines(string(data)) {
				want, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "# want: ")
				if !ok {
					break
				}
				wants = append(wants, want)
			}
			if len(wants) == 0 {
				t.Fatal("first line is not '# want: <error>'")
			}
			_, err = Parse(data, env(nil))
			if err == nil {
				t.Fatal("parsed without error")
			}
			for _, want := range wants {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
				}
			}
			if got := fielderr.Flatten(err); len(got) != len(wants) {
				t.Errorf("%d errors, want %d:\n%v", len(got), len(wants), err)
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
	if cfg.Kafka.DLQTopic != "t.dlq" || cfg.Kafka.StartFrom != "earliest" || cfg.Codec.Framing != "auto" || *cfg.Codec.MaxRecordBytes != 1<<20 ||
		cfg.Delivery.Batch.MaxEvents != 500 || cfg.Delivery.Relay.MaxBufferedEvents != 10000 || cfg.Delivery.Relay.ShutdownTimeout != 30*time.Second ||
		in.CollectPath != "event" || in.Environments[0] != "PRODUCTION" || in.IDClientFrom[0] != "attribute:at_internet_id_client" ||
		in.IsEnabled() || cfg.Telemetry.MetricsListen != ":9464" || cfg.Telemetry.HealthListen != ":8080" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
	ep, plain, _ := in.Endpoint()
	if ep != "http://127.0.0.1:8080/event" || !plain {
		t.Fatalf("Endpoint() = %q, %v", ep, plain)
	}
}

// TestAllErrorsAtOnce: an unknown key, a type error and a broken rule in
// one file are reported together, in the file's order, each with its key
// path and line; a missing required key (no line) comes last.
//
// Mutations caught: returning the unknown-key errors before the rest (as
// Parse did) loses the other two; not sorting the items by line breaks the
// order; report.rule without the line lookup loses "(line 5)".
func TestAllErrorsAtOnce(t *testing.T) {
	_, err := Parse([]byte(`kafka:
  brokers: ["b:9092"]
  topic: t
integrations:
  - {name: a, app_id: x, site_id: 0, collect_domain: d, events: [TRIAL_STARTED], colect_path: p}
delivery:
  linger: 100
`), env(nil))
	want := `integrations[0].colect_path: unknown key (line 5)
integrations[0].site_id: must be a positive integer (line 5)
delivery.linger: must be a duration with a unit (200ms, 30s, 1m30s), not "100" (line 7)
kafka.group: is required`
	if err == nil || err.Error() != want {
		t.Fatalf("err:\n%v\nwant:\n%s", err, want)
	}
	var fe *fielderr.Error
	for _, e := range fielderr.Flatten(err) {
		if !errors.As(e, &fe) {
			t.Errorf("%v is not a *fielderr.Error", e)
		}
	}
}

// TestEnvironment: each form of reference, as a POSIX shell expands it.
//
// Mutations caught: ignoring the colon (${X:-d} read as ${X-d}) fails
// "empty, :-" and "empty, :?"; treating every form as if it had one fails
// "empty, -" and "empty, ?"; leaving the Tag of a plain scalar fails
// "typed again"; expanding ${X} of an unset variable to "" fails "unset";
// leaving a bad "${" as is fails "other operator" and "not a name".
func TestEnvironment(t *testing.T) {
	vars := map[string]string{"SET": "value", "EMPTY": "", "SITE": "42"}
	tests := []struct {
		name, value string
		want        string // the group, or the error
		wantErr     bool
	}{
		{"set", "${SET}", "value", false},
		{"inside text", "a-${SET}-b", "a-value-b", false},
		{"two", "${SET}${SET}", "valuevalue", false},
		{"empty is empty", "x${EMPTY}", "x", false},
		{"unset", "${UNSET}", "kafka.group: ${UNSET}: environment variable is not set (line 1)", true},
		{"dollar dollar", "$${SET}", "${SET}", false},
		{"lone dollar", "a$b$", "a$b$", false},
		{"set, :-", "${SET:-d}", "value", false},
		{"empty, :-", "${EMPTY:-d}", "d", false},
		{"unset, :-", "${UNSET:-d}", "d", false},
		{"default with spaces and colons", "${UNSET:-a b:c}", "a b:c", false},
		{"empty default", "x${UNSET:-}", "x", false},
		{"set, -", "${SET-d}", "value", false},
		{"empty, -", "x${EMPTY-d}", "x", false},
		{"unset, -", "${UNSET-d}", "d", false},
		{"set, :?", "${SET:?no}", "value", false},
		{"empty, :?", "${EMPTY:?say it}", "kafka.group: ${EMPTY}: say it (line 1)", true},
		{"unset, :?", "${UNSET:?say it}", "kafka.group: ${UNSET}: say it (line 1)", true},
		{"unset, :? without a message", "${UNSET:?}", "kafka.group: ${UNSET}: environment variable is not set or empty (line 1)", true},
		{"empty, ?", "x${EMPTY?no}", "x", false},
		{"unset, ?", "${UNSET?say it}", "kafka.group: ${UNSET}: say it (line 1)", true},
		{"unset, ? without a message", "${UNSET?}", "kafka.group: ${UNSET}: environment variable is not set (line 1)", true},
		{"other operator", "${SET:=d}", "kafka.group: ${SET:=d}: not a reference: write ${NAME}, ${NAME:-default} or ${NAME:?message} ($$ for a literal $) (line 1)", true},
		{"not a name", "${1X}", "kafka.group: ${1X}: not a reference", true},
		{"unterminated", "a${SET", `kafka.group: "${SET": unterminated ${ (write $$ for a literal $) (line 1)`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(`kafka: {group: "`+tt.value+`", brokers: ["b:9092"], topic: t}
integrations: [{name: a, app_id: x, site_id: 1, collect_domain: d, events: [TRIAL_STARTED]}]
`), env(vars))
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want %q", err, tt.want)
				}
				if n := len(fielderr.Flatten(err)); n != 1 {
					t.Fatalf("%d errors, want 1 (a value that could not be read breaks no rule):\n%v", n, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Kafka.Group != tt.want {
				t.Fatalf("group = %q, want %q", cfg.Kafka.Group, tt.want)
			}
		})
	}
	t.Run("typed again", func(t *testing.T) {
		cfg, err := Parse([]byte(`kafka: {group: g, brokers: ["b:9092"], topic: t}
integrations:
  - name: a
    app_id: x
    site_id: ${SITE}
    enabled: ${ON:-false}
    collect_domain: d
    events: [TRIAL_STARTED]
`), env(vars))
		if err != nil {
			t.Fatal(err)
		}
		if in := cfg.Integrations[0]; in.SiteID != 42 || in.IsEnabled() {
			t.Fatalf("site %d, enabled %v", in.SiteID, in.IsEnabled())
		}
	})
}

// TestMarshal: `check --print` shows every key with its default and the
// secrets as <redacted>, and what it prints parses back to the same
// configuration (secrets aside).
//
// Mutations caught: leaving Enabled nil prints "enabled: null"; printing
// a "$" as is fails "s: $${x}" and the parse back; the old listener
// defaults fail ":9464".
func TestMarshal(t *testing.T) {
	cfg, err := Parse([]byte(`
kafka: {brokers: ["b:9092"], topic: t, group: g, sasl: {mechanism: PLAIN, username: u, password: "${PW}"}}
integrations:
  - {name: a, app_id: x, site_id: 1, collect_domain: d, events: [TRIAL_STARTED], properties: {static: {n: 1, s: "$${x}"}}}
`), env(map[string]string{"PW": "s3cr3t-kafka"}))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"  dlq_topic: t.dlq\n", "  linger: 200ms\n", "  shutdown_timeout: 30s\n", "    password: <redacted>\n",
		"    enabled: true\n", "    collect_path: event\n", "        s: $${x}\n", "  metrics_listen: :9464\n", "  health_listen: :8080\n", "  max_record_bytes: 1048576\n",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if bytes.Contains(out, []byte("s3cr3t")) {
		t.Fatalf("output leaks the secret:\n%s", out)
	}
	if cfg.Integrations[0].Enabled != nil {
		t.Error("Marshal changed its argument")
	}
	// What it prints parses back to what it printed.
	back, err := Parse(out, env(nil))
	if err != nil {
		t.Fatalf("the output does not parse: %v\n%s", err, out)
	}
	again, err := Marshal(back)
	if err != nil || !bytes.Equal(again, out) {
		t.Fatalf("printed, parsed and printed again:\n%s\nwant:\n%s", again, out)
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
		// `atrelay check --print` prints what parses back to itself.
		out, err := Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := Parse(out, env(nil))
		if err != nil {
			t.Fatalf("the printed config does not parse: %v\n%s", err, out)
		}
		if again, _ := Marshal(back); !bytes.Equal(again, out) {
			t.Fatalf("printed, parsed and printed again:\n%s\nwant:\n%s", again, out)
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
	// integrations[0].site_id: must be a positive integer (line 4)
}
