package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/internal/testkafka"
)

func TestCheckPrintsWhatToDeclare(t *testing.T) {
	t.Setenv("KAFKA_PASSWORD", "x")
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"check", "--config", "../../deploy/atrelay.example.yaml"}, &out, &errOut); err != nil {
		t.Fatalf("check: %v\n%s", err, errOut.String())
	}
	for _, want := range []string{
		"configuration OK",
		"integration my-app (enabled): site 123456, https://logs1412.xiti.com/subscription",
		"SUBSCRIPTION_STARTED             -> subscription.started",
		"TRIAL_STARTED                    -> trial_started",
		"plan_id                          string",
		"event_date                       date",
		"app_name                         string",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "ab_test_variant") {
		t.Error("a dropped property is listed")
	}
}

// TestConfigErrorNamesTheKey: `run` and `check` exit 1 before connecting
// to anything, with every configuration error at once, each on its own
// "atrelay: " line with its key path and line.
//
// Mutation caught: cli printing the joined error after a single
// "atrelay: " (as main did) fails the per-line prefix.
func TestConfigErrorNamesTheKey(t *testing.T) {
	bad := writeFile(t, `kafka: {brokers: ["b:1"], topic: t, group: g, tlss: {enabled: true}}
delivery: {linger: 100}
integrations:
  - {name: a, app_id: x, site_id: 0, collect_domain: d, events: [TRIAL_STARTED]}
`)
	for _, cmd := range []string{"run", "check"} {
		var stderr bytes.Buffer
		if code := cli(context.Background(), []string{cmd, "--config", bad}, new(bytes.Buffer), &stderr); code != 1 {
			t.Errorf("%s: exit %d, want 1\n%s", cmd, code, stderr.String())
		}
		for _, want := range []string{
			"atrelay: kafka.tlss: unknown key (line 1)\n",
			`atrelay: delivery.linger: must be a duration with a unit (200ms, 30s, 1m30s), not "100" (line 2)` + "\n",
			"atrelay: integrations[0].site_id: must be a positive integer (line 4)\n",
		} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("%s: stderr lacks %q:\n%s", cmd, want, stderr.String())
			}
		}
	}
}

// TestExitCodes: 0 for help, 2 for a command line that does not say what
// to do (printing the usage that does), 1 for an error.
//
// Mutations caught: dropping the fs.NArg check exits 0 (check, version)
// or says "one of --to, … is required" (offsets reset) for stray
// arguments; returning flag.ErrHelp as a usage error (as before) exits 2
// for "help check"; not checking --log-level accepts "loud". For offsets
// and dlq (each runs on, with the context cancelled, to exit 1): counting
// only whether a strategy was given, not how many, fails the three
// "do not go together"/"given twice" rows; checking --partitions only
// after reading the plan fails the --from-file --partitions row; ignoring
// --shift-by's parse error fails its two rows; dropping the checks of
// --output, of --execute without --reason, or of --offset without
// --partition fails that row.
func TestExitCodes(t *testing.T) {
	t.Setenv("KAFKA_PASSWORD", "x")
	cfg := "../../deploy/atrelay.example.yaml"
	tests := []struct {
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{nil, 2, "", "atrelay: a command is required\n\natrelay forwards"},
		{[]string{"--help"}, 0, "Usage: atrelay COMMAND [flags]", ""},
		{[]string{"-h"}, 0, "Usage: atrelay COMMAND [flags]", ""},
		{[]string{"help"}, 0, "  offsets reset  move the group's offsets", ""},
		{[]string{"help", "check"}, 0, "Usage: atrelay check --config FILE", ""},
		{[]string{"frobnicate"}, 2, "", `atrelay: unknown command "frobnicate"`},
		{[]string{"offsets"}, 2, "", "atrelay: offsets: show or reset?\n\nUsage: atrelay offsets show"},
		{[]string{"offsets", "frob"}, 2, "", "atrelay: offsets: show or reset?"},
		{[]string{"offsets", "--help"}, 0, "Usage: atrelay offsets reset", ""},
		{[]string{"help", "offsets"}, 0, "Usage: atrelay offsets show", ""},
		{[]string{"run"}, 2, "", "atrelay: --config is required\n\nUsage: atrelay run"},
		{[]string{"check", "--nope"}, 2, "", "atrelay: check: flag provided but not defined: -nope\n\nUsage: atrelay check"},
		{[]string{"check", "--config", cfg, "extra"}, 2, "", `atrelay: check: unexpected argument "extra"`},
		{[]string{"check", "--config", cfg, "--print", "--connect"}, 2, "", "atrelay: check: --connect and --print do not go together"},
		{[]string{"offsets", "reset", "--config", cfg, "extra", "--to", "latest"}, 2, "", `atrelay: offsets reset: unexpected argument "extra"`},
		{[]string{"offsets", "reset", "--config", cfg}, 2, "", "atrelay: offsets reset: one of --to, --shift-by, --by-duration or --from-file is required\n\nUsage: atrelay offsets reset"},
		{[]string{"offsets", "reset", "--config", cfg, "--to", "yesterday"}, 2, "", `atrelay: offsets reset: invalid value "yesterday" for flag -to: "yesterday": want earliest, latest, an RFC 3339 time`},
		{[]string{"offsets", "reset", "--config", cfg, "--to", "0:x"}, 2, "", `atrelay: offsets reset: invalid value "0:x" for flag -to: "0:x": "0:x" is not partition:offset`},
		{[]string{"offsets", "reset", "--config", cfg, "--to", "0:1,0:2"}, 2, "", `"0:1,0:2": partition 0 twice`},
		{[]string{"offsets", "reset", "--config", cfg, "--to", "earliest", "--shift-by", "1"}, 2, "", "atrelay: offsets reset: --to and --shift-by do not go together"},
		{[]string{"offsets", "reset", "--config", cfg, "--by-duration", "1h", "--from-file", "p.csv"}, 2, "", "atrelay: offsets reset: --by-duration and --from-file do not go together"},
		{[]string{"offsets", "reset", "--config", cfg, "--to", "earliest", "--to", "latest"}, 2, "", "atrelay: offsets reset: --to given twice"},
		{[]string{"offsets", "reset", "--config", cfg, "--shift-by", "x"}, 2, "", `atrelay: offsets reset: invalid value "x" for flag -shift-by: want an integer`},
		{[]string{"offsets", "reset", "--config", cfg, "--shift-by", "1.5"}, 2, "", `invalid value "1.5" for flag -shift-by: want an integer`},
		{[]string{"offsets", "reset", "--config", cfg, "--by-duration", "2"}, 2, "", `atrelay: offsets reset: invalid value "2" for flag -by-duration: want a positive duration with a unit (2h, 90m)`},
		{[]string{"offsets", "reset", "--config", cfg, "--by-duration", "-1h"}, 2, "", `invalid value "-1h" for flag -by-duration: want a positive duration`},
		{[]string{"offsets", "reset", "--config", cfg, "--from-file", ""}, 2, "", `invalid value "" for flag -from-file: want a file`},
		{[]string{"offsets", "reset", "--config", cfg, "--latest"}, 2, "", "atrelay: offsets reset: flag provided but not defined: -latest"},
		{[]string{"offsets", "reset", "--config", cfg, "--to", "latest", "--partitions", "a"}, 2, "", `atrelay: offsets reset: invalid value "a" for flag -partitions: "a": "a" is not a partition number`},
		{[]string{"offsets", "reset", "--config", cfg, "--to", "latest", "--partitions", "0,-1"}, 2, "", `invalid value "0,-1" for flag -partitions: "0,-1": "-1" is not a partition number`},
		{[]string{"offsets", "reset", "--config", cfg, "--to", "0:5", "--partitions", "1"}, 2, "", "atrelay: offsets reset: --partitions does not go with --to partition:offset: it names its partitions"},
		{[]string{"offsets", "reset", "--config", cfg, "--from-file", "does-not-exist.csv", "--partitions", "1"}, 2, "", "atrelay: offsets reset: --partitions does not go with --from-file: it names its partitions"},
		{[]string{"offsets", "reset", "--config", cfg, "--from-file", "does-not-exist.csv"}, 1, "", "atrelay: read the plan: open does-not-exist.csv: no such file or directory\n"},
		{[]string{"offsets", "reset", "--to", "latest"}, 2, "", "atrelay: --config is required\n\nUsage: atrelay offsets reset"},
		{[]string{"offsets", "show", "--config", cfg, "--output", "xml"}, 2, "", `atrelay: offsets show: --output "xml": want text or json` + "\n\nUsage: atrelay offsets show"},
		{[]string{"dlq"}, 2, "", "atrelay: dlq: replay?\n\nUsage: atrelay dlq replay"},
		{[]string{"dlq", "--help"}, 0, "Usage: atrelay dlq replay", ""},
		{[]string{"help", "dlq"}, 0, "Usage: atrelay dlq replay", ""},
		{[]string{"dlq", "replay", "--config", cfg, "--execute"}, 2, "", "atrelay: dlq replay: --execute needs at least one --reason (a dry run lists the reasons present)\n\nUsage: atrelay dlq replay"},
		{[]string{"dlq", "replay", "--config", cfg, "--offset", "3"}, 2, "", "atrelay: dlq replay: --offset needs --partition"},
		{[]string{"dlq", "replay", "--config", cfg, "--partition", "x"}, 2, "", `atrelay: dlq replay: invalid value "x" for flag -partition: want a partition number`},
		{[]string{"dlq", "replay", "--config", cfg, "--partition", "-1"}, 2, "", `invalid value "-1" for flag -partition: want a partition number`},
		{[]string{"dlq", "replay", "--config", cfg, "--partition", "0", "--offset", "-1"}, 2, "", `invalid value "-1" for flag -offset: want an offset`},
		{[]string{"dlq", "replay", "--config", cfg, "--since", "yesterday"}, 2, "", `atrelay: dlq replay: invalid value "yesterday" for flag -since: want an RFC 3339 time (2026-11-01T00:00:00Z)`},
		{[]string{"dlq", "replay", "--config", cfg, "--reason", ""}, 2, "", `invalid value "" for flag -reason: want a reason`},
		{[]string{"dlq", "replay", "--config", cfg, "--reason", "http_400", "extra"}, 2, "", `atrelay: dlq replay: unexpected argument "extra"`},
		{[]string{"dlq", "replay", "--reason", "http_400"}, 2, "", "atrelay: --config is required\n\nUsage: atrelay dlq replay"},
		{[]string{"send-test", "--config", cfg}, 2, "", "atrelay: send-test: --integration is required"},
		{[]string{"version", "extra"}, 2, "", `atrelay: version: unexpected argument "extra"`},
		{[]string{"run", "--log-level", "loud", "--config", cfg}, 2, "", `atrelay: run: --log-level "loud": want debug, info, warn or error`},
		{[]string{"run", "--log-format", "xml", "--config", cfg}, 2, "", `atrelay: run: --log-format "xml": want json, text or auto`},
		{[]string{"check", "--config", "does-not-exist.yaml"}, 1, "", "atrelay: config: open does-not-exist.yaml: no such file or directory\n"},
		{[]string{"check", "--config", cfg}, 0, "configuration OK", ""},
	}
	// Cancelled: a command line that is wrongly accepted must not run on.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cli(ctx, tt.args, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Fatalf("exit %d, want %d\nstdout (want %q):\n%s\nstderr (want %q):\n%s", code, tt.code, tt.wantStdout, stdout.String(), tt.wantStderr, stderr.String())
			}
			if tt.code == 0 && stderr.Len() > 0 {
				t.Fatalf("stderr:\n%s", stderr.String())
			}
		})
	}
}

// TestCommandHelp: `atrelay <command> --help` and `-h` exit 0 and print
// the command's synopsis and every one of its flags on stdout.
//
// Mutations caught: printing the help on stderr (where flag prints it)
// fails every row; returning flag.ErrHelp as a usage error (as before)
// exits 2 on every row.
func TestCommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, help := range []string{"--help", "-h"} {
			t.Run(c.name+" "+help, func(t *testing.T) {
				args := append(strings.Fields(c.name), help)
				var stdout, stderr bytes.Buffer
				if code := cli(context.Background(), args, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
					t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
				}
				if !strings.HasPrefix(stdout.String(), strings.TrimSpace("Usage: atrelay "+c.name+" "+c.synopsis)+"\n") {
					t.Fatalf("stdout:\n%s", stdout.String())
				}
				fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
				c.flags(fs)
				fs.VisitAll(func(f *flag.Flag) {
					if !strings.Contains(stdout.String(), "  -"+f.Name+" ") && !strings.Contains(stdout.String(), "  -"+f.Name+"\n") {
						t.Errorf("help lacks -%s:\n%s", f.Name, stdout.String())
					}
				})
			})
		}
	}
}

// TestVersion: `atrelay version` and `atrelay --version` print the same:
// version, commit, build date, Go and franz-go versions, with -ldflags'
// Commit and Date winning over the toolchain's stamp.
//
// Mutation caught: printing app.UserAgent (as before). (Which of the
// toolchain's stamp and -ldflags wins is TestBuildInfo's, in internal/app.)
func TestVersion(t *testing.T) {
	commit, date := app.Commit, app.Date
	t.Cleanup(func() { app.Commit, app.Date = commit, date })
	app.Commit, app.Date = "0123abc", "2026-12-01T00:00:00Z" // as -ldflags -X sets them
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var stdout bytes.Buffer
		if code := cli(context.Background(), args, &stdout, new(bytes.Buffer)); code != 0 {
			t.Fatalf("%v: exit %d", args, code)
		}
		outs = append(outs, stdout.String())
	}
	if outs[0] != outs[1] {
		t.Fatalf("version:\n%s\n--version:\n%s", outs[0], outs[1])
	}
	want := "atrelay " + app.Version + "\ncommit   0123abc\nbuilt    2026-12-01T00:00:00Z\ngo       " + runtime.Version() + "\nfranz-go v1."
	if !strings.HasPrefix(outs[0], want) {
		t.Fatalf("version:\n%s\nwant it to start:\n%s", outs[0], want)
	}
}

// TestCheckPrint: `check --print` prints the effective configuration:
// defaults applied (including the listeners a container needs), secrets
// as <redacted>.
//
// Mutation caught: --print falling through to the summary fails every
// line. (What Marshal prints is TestMarshal's, in internal/config.)
func TestCheckPrint(t *testing.T) {
	cfgPath := writeFile(t, `
kafka: {brokers: ["b:1"], topic: t, group: g, sasl: {mechanism: PLAIN, username: u, password: "${ATRELAY_TEST_PW}"}}
integrations:
  - {name: a, app_id: x, site_id: 1, collect_domain: d, events: [TRIAL_STARTED]}
`)
	t.Setenv("ATRELAY_TEST_PW", "s3cr3t-pw")
	var stdout, stderr bytes.Buffer
	if code := cli(context.Background(), []string{"check", "--print", "--config", cfgPath}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr.String())
	}
	for _, want := range []string{"  dlq_topic: t.dlq\n", "    password: <redacted>\n", "  max_buffered_events: 10000\n",
		"  linger: 200ms\n", "  metrics_listen: :9464\n", "  health_listen: :8080\n", "    collect_path: event\n"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), "s3cr3t") || strings.Contains(stdout.String(), "configuration OK") {
		t.Fatalf("output:\n%s", stdout.String())
	}
}

// TestLogger: --log-level drops what is below it, and durations read as
// Go durations in both formats, nested or not.
//
// Mutations caught: no ReplaceAttr (JSON writes 1500000000) fails "json
// duration"; no Level in the HandlerOptions fails "debug shows debug",
// "warn hides info" and "error hides warn".
func TestLogger(t *testing.T) {
	tests := []struct {
		name, format, level string
		want, notWant       []string
	}{
		{"json duration", "json", "info", []string{`"timeout":"1.5s"`, `"retry":{"after":"250ms"}`}, []string{"1500000000"}},
		{"text duration", "text", "info", []string{"timeout=1.5s", "retry.after=250ms"}, nil},
		{"info hides debug", "json", "info", []string{`"msg":"info line"`}, []string{"debug line"}},
		{"debug shows debug", "json", "debug", []string{`"msg":"debug line"`, `"msg":"info line"`}, nil},
		{"warn hides info", "json", "warn", []string{`"msg":"warn line"`}, []string{"info line", "debug line"}},
		{"error hides warn", "text", "error", []string{"msg=\"error line\""}, []string{"warn line"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			log, err := newLogger(&out, tt.format, tt.level)
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("debug line")
			log.Info("info line", "timeout", 1500*time.Millisecond, slog.Group("retry", "after", 250*time.Millisecond))
			log.Warn("warn line")
			log.Error("error line")
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("log lacks %s:\n%s", w, out.String())
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out.String(), w) {
					t.Errorf("log has %s:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestRunLogLevel: run's --log-level reaches the service's logger: at
// error, a run that starts and stops cleanly logs nothing; at info it
// logs its start, JSON by default when not on a terminal.
//
// Mutation caught: run building its logger at a fixed info level fails
// the "error" row.
func TestRunLogLevel(t *testing.T) {
	cfgPath := writeFile(t, `
kafka: {brokers: ["127.0.0.1:1"], topic: t, group: g}
integrations:
  - {name: a, app_id: x, site_id: 1, collect_domain: "http://127.0.0.1:1", events: [TRIAL_STARTED]}
telemetry: {metrics_listen: "off", health_listen: "off"}
`)
	for _, tt := range []struct {
		level string
		want  bool
	}{{"error", false}, {"info", true}} {
		t.Run(tt.level, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // start and stop at once
			// The Kafka client's goroutines may still log while the
			// client closes: the buffer must take concurrent writes.
			var stderr lockedBuffer
			if code := cli(ctx, []string{"run", "--config", cfgPath, "--log-level", tt.level}, new(bytes.Buffer), &stderr); code != 0 {
				t.Fatalf("exit %d\n%s", code, stderr.String())
			}
			if got := strings.Contains(stderr.String(), `"level":"INFO"`); got != tt.want {
				t.Fatalf("INFO lines: %v, want %v:\n%s", got, tt.want, stderr.String())
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
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

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "atrelay.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSendTest(t *testing.T) {
	collector := sandbox.New()
	srv := httptest.NewServer(collector)
	defer srv.Close()
	cfgPath := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfgPath, []byte(`
kafka: {brokers: ["b:1"], topic: t, group: g}
integrations:
  - {name: app, app_id: com.example.app, site_id: 42, collect_domain: "`+srv.URL+`", events: [TRIAL_STARTED],
     event_names: {TRIAL_STARTED: trial.started}, idclient_from: ["attribute:custom_id"]}
`), 0o600)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"send-test", "--config", cfgPath, "--integration", "app"}, &out, new(bytes.Buffer)); err != nil {
		t.Fatalf("send-test: %v\n%s", err, out.String())
	}
	hits := collector.Hits()
	if len(hits) != 1 || hits[0].Site != 42 || hits[0].Name != "trial.started" || hits[0].IDClient != "atrelay-send-test" ||
		!strings.HasPrefix(hits[0].Data["event_id"].(string), "atrelay-send-test-") {
		t.Fatalf("collector got %+v", hits)
	}
	if !strings.Contains(out.String(), "POST "+srv.URL+"/event?s=42&idclient=atrelay-send-test") || !strings.Contains(out.String(), "delivered") {
		t.Fatalf("output:\n%s", out.String())
	}
	err := run(context.Background(), []string{"send-test", "--config", cfgPath, "--integration", "nope"}, new(bytes.Buffer), new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), `no integration named "nope"`) {
		t.Fatalf("unknown integration: %v", err)
	}
}

// TestCheckConnectHidesRegistryCredentials: with credentials in
// codec.schema_registry.url (issue 9), `check --connect` names the registry
// but prints neither the user nor the password, whether the registry
// answers, fails or is down — and the credentials still authenticate.
// The output is redacted in two layers, so each mutation below was tried
// with the other layer removed too: printing the label with u instead of
// redact.URL(u) (and not redacting what in report) fails every row;
// reporting err instead of redact.Error(err) (with codec.RegistryClient
// leaving the userinfo in the URL) fails "down".
func TestCheckConnectHidesRegistryCredentials(t *testing.T) {
	const password = "s3cr3t-pw"
	kafka := testkafka.New(t)
	topic := kafka.Name(t, "check")
	kafka.CreateTopic(t, topic, 1)
	kafka.CreateTopic(t, topic+".dlq", 1)
	collector := httptest.NewServer(sandbox.New())
	t.Cleanup(collector.Close)

	good := srfake.New(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+password))))
	t.Cleanup(good.Close)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error_code":50001,"message":"internal error"}`, http.StatusInternalServerError)
	}))
	t.Cleanup(failing.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	tests := []struct {
		name, registry, want string
	}{
		{"answers", good.URL(), "ok   schema registry "},
		{"500", failing.URL, "FAIL schema registry "},
		{"down", down.URL, "FAIL schema registry "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withCreds := strings.Replace(tt.registry, "http://", "http://svc:"+password+"@", 1)
			cfgPath := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(cfgPath, []byte(`
kafka: {brokers: ["`+strings.Join(kafka.Brokers(), `","`)+`"], topic: "`+topic+`", group: g, dlq_topic: "`+topic+`.dlq"}
codec: {schema_registry: {url: "`+withCreds+`"}}
integrations:
  - {name: app, app_id: com.example.app, site_id: 42, collect_domain: "`+collector.URL+`", events: [TRIAL_STARTED]}
`), 0o600)
			var out, errOut bytes.Buffer
			err := run(context.Background(), []string{"check", "--connect", "--config", cfgPath}, &out, &errOut)
			all := out.String() + errOut.String()
			if err != nil {
				all += err.Error()
			}
			if strings.Contains(all, password) || strings.Contains(all, "svc:") {
				t.Fatalf("credentials in the output:\n%s", all)
			}
			want := tt.want + strings.Replace(tt.registry, "http://", "http://REDACTED@", 1)
			if !strings.Contains(out.String(), want) {
				t.Fatalf("output lacks %q:\n%s", want, all)
			}
			if (err == nil) != strings.HasPrefix(tt.want, "ok") {
				t.Fatalf("err = %v\n%s", err, all)
			}
		})
	}
}

// TestOffsetsCommands runs `offsets show` and `offsets reset` as an
// operator would: show --output json names the lag per partition; reset
// --shift-by with --export writes the plan (CSV or JSON) and --execute
// commits it; after the offsets move elsewhere, reset --from-file with
// that plan commits the same offsets again.
//
// Mutation caught: ResetOffsets exporting after the commit only when
// execute is false (the export skipped with --execute) fails at reading
// the plan.
func TestOffsetsCommands(t *testing.T) {
	kafka := testkafka.New(t)
	topic, group := kafka.Name(t, "events"), kafka.Name(t, "group")
	kafka.CreateTopic(t, topic, 2)
	var recs []*kgo.Record
	for p := range int32(2) {
		for range 10 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v")})
		}
	}
	kafka.Produce(t, recs...)
	cfgPath := writeFile(t, `
kafka: {brokers: ["`+strings.Join(kafka.Brokers(), `","`)+`"], topic: "`+topic+`", group: "`+group+`"}
integrations:
  - {name: a, app_id: x, site_id: 1, collect_domain: d, events: [TRIAL_STARTED]}
`)
	cli := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := cli(context.Background(), append(args, "--config", cfgPath), &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, stderr.String())
		}
		return stdout.String()
	}
	cli("offsets", "reset", "--to", "0:6,1:8", "--execute")
	var shown struct {
		TotalLag   int64 `json:"total_lag"`
		Partitions []struct {
			Partition int32 `json:"partition"`
			Lag       int64 `json:"lag"`
		} `json:"partitions"`
	}
	if err := json.Unmarshal([]byte(cli("offsets", "show", "--output", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.TotalLag != 6 || len(shown.Partitions) != 2 || shown.Partitions[1].Lag != 2 {
		t.Fatalf("show --output json: %+v", shown)
	}
	for _, name := range []string{"plan.csv", "plan.json"} {
		t.Run(name, func(t *testing.T) {
			plan := filepath.Join(t.TempDir(), name)
			cli("offsets", "reset", "--to", "0:6,1:8", "--execute")
			out := cli("offsets", "reset", "--shift-by", "-7", "--partitions", "1", "--export", plan, "--execute")
			if !strings.Contains(out, "plan written to "+plan) || !strings.Contains(out, "unchanged") {
				t.Fatalf("reset output:\n%s", out)
			}
			want := map[int32]int64{0: 6, 1: 1}
			if got := kafka.Committed(t, group, topic); !maps.Equal(got, want) {
				t.Fatalf("after --shift-by: committed %v, want %v", got, want)
			}
			cli("offsets", "reset", "--to", "latest", "--execute")
			cli("offsets", "reset", "--from-file", plan, "--execute")
			if got := kafka.Committed(t, group, topic); !maps.Equal(got, map[int32]int64{0: 10, 1: 1}) {
				t.Fatalf("after --from-file: committed %v, want partition 1 back at 1 and 0 left at 10", got)
			}
		})
	}
}
