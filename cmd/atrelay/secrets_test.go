package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/schemas"
)

// The distinctive secrets of the audit. Each is a value no output may
// contain; they are long enough that no hash, id or offset matches one by
// chance.
const (
	auditKafkaUser = "atrelay-svc"
	// auditKafkaPassword reaches the configuration through the environment:
	// password: "${ATRELAY_TEST_KAFKA_PASSWORD}".
	auditKafkaPassword = "Kafka-PW-4c1e8b7d"
	// auditRegistryPassword is written in the file.
	auditRegistryPassword = "Registry-PW-9a7f3d21"
	// auditURLPassword is in a registry URL's userinfo (http://svc:pw@host).
	auditURLPassword = "Url-PW-2d6b0e55"
	// auditOTLPToken is in OTEL_EXPORTER_OTLP_HEADERS, which the exporters
	// send to the collector and nothing else may show.
	auditOTLPToken = "Otlp-Token-5f8c1a6e"
	// The wrong passwords of the failing runs: as secret as right ones.
	auditWrongKafkaPassword    = "Wrong-Kafka-PW-71b3e9"
	auditWrongRegistryPassword = "Wrong-Registry-PW-0c4d"
	// auditBadSecret is the text of passwords that cannot be expanded: after an
	// unterminated "${", or inside a "${…}" that is not a reference.
	auditBadSecret = "Bad-Ref-PW-8e2f5c"
)

// auditSecrets is every secret, and the forms it takes on the wire (HTTP
// basic auth), with a name for the report.
func auditSecrets() map[string]string {
	basic := func(user, pw string) string { return base64.StdEncoding.EncodeToString([]byte(user + ":" + pw)) }
	return map[string]string{
		"kafka password":            auditKafkaPassword,
		"registry password":         auditRegistryPassword,
		"registry URL password":     auditURLPassword,
		"OTLP token":                auditOTLPToken,
		"wrong kafka password":      auditWrongKafkaPassword,
		"wrong registry password":   auditWrongRegistryPassword,
		"unexpandable password":     auditBadSecret,
		"registry basic auth":       basic("svc", auditRegistryPassword),
		"registry URL basic auth":   basic("svc", auditURLPassword),
		"wrong registry basic auth": basic("svc", auditWrongRegistryPassword),
	}
}

// secretsAudit collects every output of the test, by where it came from, and
// checks them all for every secret.
type secretsAudit struct {
	mu      sync.Mutex
	outputs map[string]string
}

func (a *secretsAudit) add(name, text string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.outputs[name] += text
}

func (a *secretsAudit) check(t *testing.T) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	total := 0
	for _, name := range slices.Sorted(maps.Keys(a.outputs)) {
		out := a.outputs[name]
		total += len(out)
		for what, s := range auditSecrets() {
			if i := strings.Index(out, s); i >= 0 {
				t.Errorf("%s leaks the %s: …%s…", name, what, out[max(0, i-200):min(len(out), i+len(s)+50)])
			}
		}
	}
	t.Logf("audited %d outputs, %d bytes", len(a.outputs), total)
}

// secretsWorld is what the commands run against: kfake requiring SCRAM
// authentication, a registry requiring basic auth, a collector, an OTLP
// receiver, and the configuration files.
type secretsWorld struct {
	t         *testing.T
	audit     *secretsAudit
	fake      *kfake.Cluster
	admin     *kgo.Client
	registry  *srfake.Registry
	collector *sandbox.Collector
	collect   *httptest.Server
	otlp      *auditOTLP
	env       []string
}

const (
	secretsTopic = "events"
	secretsGroup = "atrelay"
)

func newSecretsWorld(t *testing.T) *secretsWorld {
	t.Helper()
	w := &secretsWorld{t: t, audit: &secretsAudit{outputs: map[string]string{}}}
	// Registered first, so run last: after every service's cleanup has
	// added what it printed.
	t.Cleanup(func() { w.audit.check(t) })
	var err error
	w.fake, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", auditKafkaUser, auditKafkaPassword),
		kfake.SeedTopics(1, secretsTopic, secretsTopic+".dlq", secretsTopic+".park"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.fake.Close)
	w.admin, err = kgo.NewClient(kgo.SeedBrokers(w.fake.ListenAddrs()...),
		kgo.SASL(scram.Auth{User: auditKafkaUser, Pass: auditKafkaPassword}.AsSha256Mechanism()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.admin.Close)
	w.registry = srfake.New(srfake.WithAuth("Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+auditRegistryPassword))))
	t.Cleanup(w.registry.Close)
	w.registry.SeedSchema(secretsTopic+"-value", 1, 1, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	w.collector = sandbox.New()
	w.collect = httptest.NewServer(w.collector)
	t.Cleanup(w.collect.Close)
	w.otlp = &auditOTLP{audit: w.audit}
	otlp := httptest.NewServer(w.otlp)
	t.Cleanup(otlp.Close)
	w.env = []string{
		"ATRELAY_TEST_KAFKA_PASSWORD=" + auditKafkaPassword,
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.URL,
		"OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20" + auditOTLPToken,
		"OTEL_METRIC_EXPORT_INTERVAL=200",
		"OTEL_BSP_SCHEDULE_DELAY=100",
	}
	return w
}

// config writes a configuration file: password and regPassword are
// YAML scalars as written in the file (a reference, or a literal).
func (w *secretsWorld) config(name, group, password, registryURL, regPassword string) string {
	w.t.Helper()
	events := append(slices.Clone(fixture.TableEvents), fixture.OtherEvents...)
	return writeAuditConfig(w.t, name, fmt.Sprintf(`
kafka:
  brokers: [%q]
  topic: %s
  group: %s
  sasl: {mechanism: SCRAM-SHA-256, username: %s, password: %s}
codec:
  schema_registry: {url: %q, username: svc, password: %s}
delivery: {linger: 20ms, commit_interval: 100ms, backoff: {min: 5ms, max: 100ms}, shutdown_timeout: 2s}
integrations:
  - name: news
    app_id: %s
    site_id: 100002
    collect_domain: %q
    environments: [PRODUCTION, SANDBOX]
    events: [%s]
    idclient_from: ["attribute:at_internet_id_client", user_id, anonymous_user_id]
telemetry: {metrics_listen: "127.0.0.1:0", health_listen: "127.0.0.1:0"}
`, w.fake.ListenAddrs()[0], secretsTopic, group, auditKafkaUser, password, registryURL, regPassword, fixture.AppNews, w.collect.URL, strings.Join(events, ", ")))
}

// writeAuditConfig writes a configuration file named name.yaml in a new
// temporary directory and returns its path.
func writeAuditConfig(t *testing.T, name, content string) string {
	t.Helper()
	path := t.TempDir() + "/" + name + ".yaml"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// auditOTLP is an OTLP/HTTP endpoint that keeps every request body
// (uncompressed) for the audit, and counts requests per signal.
type auditOTLP struct {
	audit *secretsAudit

	mu       sync.Mutex
	requests map[string]int
	token    bool // a request carried the token, as it should
}

func (s *auditOTLP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.audit.add("OTLP "+r.URL.Path, string(b))
	s.mu.Lock()
	if s.requests == nil {
		s.requests = map[string]int{}
	}
	s.requests[r.URL.Path]++
	s.token = s.token || r.Header.Get("Authorization") == "Bearer "+auditOTLPToken
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
}

// auditResult is what one command printed, and its exit code.
type auditResult struct {
	stdout, stderr string
	code           int
}

// command is this test binary run as atrelay with args (no spaces in
// any; TestMain runs main) in the world's environment.
func (w *secretsWorld) command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(append(os.Environ(), w.env...), "ATRELAY_TEST_MAIN="+strings.Join(args, " "))
	return cmd
}

// run runs a command to its end, killed after a minute, and adds what it
// printed to the audit under name.
func (w *secretsWorld) run(name string, args ...string) auditResult {
	w.t.Helper()
	cmd := w.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	_ = cmd.Wait()
	res := auditResult{stdout.String(), stderr.String(), cmd.ProcessState.ExitCode()}
	w.audit.add(name+" stdout", res.stdout)
	w.audit.add(name+" stderr", res.stderr)
	return res
}

// auditedService is a running `atrelay run`.
type auditedService struct {
	cmd            *exec.Cmd
	stdout, stderr lockedBuffer
	lines          chan string // every stderr line
	done           chan struct{}
	record         func() // adds the outputs to the audit, once
}

// start starts a command that runs until stopped; what it printed is added
// to the audit under name when the test ends.
func (w *secretsWorld) start(name string, args ...string) *auditedService {
	w.t.Helper()
	s := &auditedService{cmd: w.command(args...), lines: make(chan string, 1<<16), done: make(chan struct{})}
	s.record = sync.OnceFunc(func() {
		w.audit.add(name+" stdout", s.stdout.String())
		w.audit.add(name+" stderr", s.stderr.String())
	})
	s.cmd.Stdout = &s.stdout
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		w.t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		w.t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(pipe)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			s.stderr.Write(append(sc.Bytes(), '\n'))
			select {
			case s.lines <- sc.Text():
			default:
			}
		}
		close(s.lines)
	}()
	w.t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.done
		s.cmd.Wait()
		s.record()
	})
	return s
}

// waitLine returns the first stderr line containing sub, failing the test
// after a minute or when the process ends first.
func (s *auditedService) waitLine(t *testing.T, sub string) string {
	t.Helper()
	deadline := time.After(time.Minute)
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("exited before logging %q:\n%s", sub, s.stderr.String())
			}
			if strings.Contains(line, sub) {
				return line
			}
		case <-deadline:
			t.Fatalf("no line with %q within a minute:\n%s", sub, s.stderr.String())
		}
	}
}

// stop sends SIGTERM and waits for the exit, which must be 0.
func (s *auditedService) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		t.Fatalf("did not stop within a minute:\n%s", s.stderr.String())
	}
	err := s.cmd.Wait()
	s.record()
	if err != nil {
		t.Fatalf("exit: %v\n%s", err, s.stderr.String())
	}
}

// produce writes events for the news integration and three records that
// are dead-lettered (garbage, truncated, an unknown schema id), and
// returns the end offset.
func (w *secretsWorld) produce() int64 {
	w.t.Helper()
	enc := fixture.MustEncoder("")
	evs := fixture.Generate(fixture.Options{Seed: 4, Events: 60, Apps: []string{fixture.AppNews}})
	var recs []*kgo.Record
	for i := range evs {
		recs = append(recs, &kgo.Record{Topic: secretsTopic, Value: enc.Confluent(1, &evs[i])})
	}
	for _, kind := range []string{fixture.CorruptGarbage, fixture.CorruptTruncated, fixture.CorruptUnknownSchema} {
		recs = append(recs, &kgo.Record{Topic: secretsTopic, Value: enc.Corrupt(kind, &evs[0])})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.admin.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		w.t.Fatal(err)
	}
	return recs[len(recs)-1].Offset + 1
}

// waitCommitted polls the group's committed offset until it is end: the
// service is a separate process, with no hook to wait on.
func (w *secretsWorld) waitCommitted(group string, end int64) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	adm := kadm.NewClient(w.admin)
	for {
		offs, err := adm.FetchOffsets(ctx, group)
		if err == nil {
			if o, ok := offs.Lookup(secretsTopic, 0); ok && o.At == end {
				return
			}
		}
		select {
		case <-ctx.Done():
			w.t.Fatalf("group %s did not commit offset %d: %v", group, end, err)
		case <-tick.C:
		}
	}
}

// get fetches url and adds its body to the audit.
func (w *secretsWorld) get(name, url string) string {
	w.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	w.audit.add(name, string(b))
	return string(b)
}

// TestSecretsNeverShow is the secrets audit (issue 15, point 4): every
// command, run as the real binary (this test binary running main) with
// distinctive passwords in the configuration file (the registry's), in
// the environment (Kafka's, through ${…}; an OTLP token in
// OTEL_EXPORTER_OTLP_HEADERS), in a registry URL, and wrong ones, prints
// none of them — in its stdout, its stderr (logs at debug level, errors, a
// panic's trace if one happened), the /metrics, /healthz and /readyz
// pages, or the spans and metrics it exports over OTLP. The broker is
// kfake requiring SCRAM-SHA-256, so that the right password is proven to
// have been used (records delivered, offsets committed) and the wrong one
// to fail.
//
// Commands: run (all delivered and committed; a wrong registry password:
// decode retries; a wrong Kafka password: the client fails to
// authenticate — kfake closes the connection, so the error is EOF; the
// cause named is for the real-broker SASL tests), check, check --print, check --connect (right and wrong
// passwords), offsets show (text, json), offsets reset (dry run), dlq
// replay (dry run), send-test, version, --version, --help, and bad
// configurations (through check, check --print and run). Not run: demo
// and collector, which read no configuration and so hold no secret.
//
// Leaks it found, fixed: the text of a password after an unterminated
// "${", or inside a "${…}" that is not a reference, quoted in the
// configuration error (config.expandString); the registry URL's userinfo
// printed by check --print (config.Marshal).
//
// Mutations caught (each applied once, seen failing, reverted): run
// logging cfg.Kafka.SASL.Password.Reveal() at debug (every run's stderr);
// secret.Secret.String returning the value (check --print prints the
// Kafka and registry passwords); config.Marshal without redact.URL (check
// --print prints the URL password); expandString quoting a secret's text
// (the unexpandable password, in check, check --print and run); the
// check --connect report without redact.String and its registry label
// without redact.URL (the URL password in its stdout and error). Removing
// only one redaction layer on the log path (redact.Handler, or redact.Error
// in the codec with RegistryClient keeping the userinfo) is not caught:
// the other layers still hold, and the registry's 401 error does not
// quote the URL.
func TestSecretsNeverShow(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes")
	}
	w := newSecretsWorld(t)
	end := w.produce()
	good := w.config("good", secretsGroup, `"${ATRELAY_TEST_KAFKA_PASSWORD}"`, w.registry.URL(), auditRegistryPassword)

	t.Run("run", func(t *testing.T) {
		s := w.start("run", "run", "--config", good, "--log-level", "debug", "--log-format", "json")
		var started struct{ Metrics, Health string }
		if err := json.Unmarshal([]byte(s.waitLine(t, `"atrelay starting"`)), &started); err != nil {
			t.Fatal(err)
		}
		w.waitCommitted(secretsGroup, end)
		if n := len(w.collector.Hits()); n == 0 {
			t.Fatal("nothing delivered")
		}
		if page := w.get("GET /metrics", "http://"+started.Metrics+"/metrics"); !strings.Contains(page, "atrelay_") {
			t.Fatalf("/metrics has no atrelay_ metric:\n%s", page)
		}
		w.get("GET /healthz", "http://"+started.Health+"/healthz")
		w.get("GET /readyz", "http://"+started.Health+"/readyz")
		s.stop(t)
		if !strings.Contains(s.stderr.String(), `"level":"DEBUG"`) {
			t.Error("no debug line logged")
		}
		w.otlp.mu.Lock()
		defer w.otlp.mu.Unlock()
		if w.otlp.requests["/v1/traces"] == 0 || w.otlp.requests["/v1/metrics"] == 0 || !w.otlp.token {
			t.Errorf("OTLP requests %v, token sent %v: want traces and metrics, with the token", w.otlp.requests, w.otlp.token)
		}
	})
	t.Run("run, wrong registry password", func(t *testing.T) {
		cfg := w.config("wrong-registry", "other-group", `"${ATRELAY_TEST_KAFKA_PASSWORD}"`, w.registry.URL(), auditWrongRegistryPassword)
		s := w.start("run, wrong registry password", "run", "--config", cfg, "--log-level", "debug")
		s.waitLine(t, "User not authorized")
		s.stop(t)
	})
	// The registry's credentials in its URL, wrong ones.
	inURL := w.config("url-registry", "url-group", `"${ATRELAY_TEST_KAFKA_PASSWORD}"`,
		strings.Replace(w.registry.URL(), "http://", "http://svc:"+auditURLPassword+"@", 1), `""`)
	t.Run("run, wrong registry password in the URL", func(t *testing.T) {
		s := w.start("run, registry URL password", "run", "--config", inURL, "--log-level", "debug")
		s.waitLine(t, "User not authorized")
		s.stop(t)
	})
	t.Run("run, wrong kafka password", func(t *testing.T) {
		cfg := w.config("wrong-kafka", secretsGroup, auditWrongKafkaPassword, w.registry.URL(), auditRegistryPassword)
		s := w.start("run, wrong kafka password", "run", "--config", cfg, "--log-level", "debug")
		s.waitLine(t, `"kafka connection failed"`)
		s.stop(t)
	})

	wrong := w.config("wrong", secretsGroup, auditWrongKafkaPassword, w.registry.URL(), auditWrongRegistryPassword)
	for _, c := range []struct {
		name     string
		args     []string
		code     int
		contains string // in stdout or stderr
	}{
		{"check", []string{"check", "--config", good}, 0, "configuration OK"},
		{"check --print", []string{"check", "--print", "--config", good}, 0, "password: <redacted>"},
		{"check --connect", []string{"check", "--connect", "--config", good}, 0, "ok   schema registry"},
		{"check --connect, wrong passwords", []string{"check", "--connect", "--config", wrong}, 1, "FAIL schema registry"},
		{"check --connect, registry URL password", []string{"check", "--connect", "--config", inURL}, 1, "FAIL schema registry http://REDACTED@"},
		{"check --print, registry URL password", []string{"check", "--print", "--config", inURL}, 0, "url: http://REDACTED@"},
		{"offsets show", []string{"offsets", "show", "--config", good}, 0, secretsTopic},
		{"offsets show json", []string{"offsets", "show", "--output", "json", "--config", good}, 0, `"partitions"`},
		{"offsets show, wrong password", []string{"offsets", "show", "--config", wrong}, 1, "atrelay: "},
		{"offsets reset dry run", []string{"offsets", "reset", "--to", "earliest", "--config", good}, 0, "dry run"},
		{"dlq replay dry run", []string{"dlq", "replay", "--config", good}, 0, "corrupt"},
		{"dlq replay, wrong password", []string{"dlq", "replay", "--config", wrong}, 1, "atrelay: "},
		{"send-test", []string{"send-test", "--integration", "news", "--config", good}, 0, "delivered"},
		{"version", []string{"version"}, 0, "franz-go"},
		{"--version", []string{"--version"}, 0, "franz-go"},
		{"--help", []string{"--help"}, 0, "Usage"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := w.run(c.name, c.args...)
			if res.code != c.code || !strings.Contains(res.stdout+res.stderr, c.contains) {
				t.Errorf("exit %d, want %d with %q:\nstdout:\n%s\nstderr:\n%s", res.code, c.code, c.contains, res.stdout, res.stderr)
			}
		})
	}

	// Bad configurations, each with secrets beside (or in) what is wrong.
	base := func(sasl, codec, collect string) string {
		return fmt.Sprintf(`
kafka: {brokers: ["127.0.0.1:1"], topic: t, group: g, sasl: %s}
codec: %s
integrations:
  - {name: a, app_id: x, site_id: 1, collect_domain: %q, events: [TRIAL_STARTED]}
`, sasl, codec, collect)
	}
	okSASL := `{mechanism: PLAIN, username: u, password: "${ATRELAY_TEST_KAFKA_PASSWORD}"}`
	okCodec := `{schema_registry: {url: "http://r:8081", username: svc, password: ` + auditRegistryPassword + `}}`
	for _, c := range []struct {
		name, text, want string
	}{
		{"unterminated reference", base(`{mechanism: PLAIN, username: u, password: "x${`+auditBadSecret+`"}`, okCodec, "h"), "kafka.sasl.password: unterminated ${"},
		{"not a reference", base(`{mechanism: PLAIN, username: u, password: "${.`+auditBadSecret+`}"}`, okCodec, "h"), "kafka.sasl.password: not a reference"},
		{"password a list", base(okSASL, `{schema_registry: {url: "http://r:8081", username: svc, password: [`+auditRegistryPassword+`]}}`, "h"), "codec.schema_registry.password: must be a string"},
		{"registry URL not http", base(okSASL, `{schema_registry: {url: "ftp://svc:`+auditURLPassword+`@r:8081"}}`, "h"), "codec.schema_registry.url"},
		{"registry URL unparsable", base(okSASL, `{schema_registry: {url: "http://svc:`+auditURLPassword+`@r:80x81"}}`, "h"), "codec.schema_registry.url"},
		{"collect domain with userinfo", base(okSASL, okCodec, "http://u:"+auditURLPassword+"@h"), "integrations[0].collect_domain"},
		{"unknown key beside the password", base(`{mechanism: PLAIN, username: u, password: "${ATRELAY_TEST_KAFKA_PASSWORD}", pasword: `+auditRegistryPassword+`}`, okCodec, "h"), "kafka.sasl.pasword: unknown key"},
		{"bad mechanism", base(`{mechanism: PLAIN2, username: u, password: "${ATRELAY_TEST_KAFKA_PASSWORD}"}`, okCodec, "h"), "kafka.sasl.mechanism"},
		{"not YAML", "kafka: {sasl: {password: " + auditRegistryPassword + ", username: [}\n", "config:"},
		{"duplicate password", base(`{mechanism: PLAIN, username: u, password: `+auditRegistryPassword+`, password: `+auditBadSecret+`}`, okCodec, "h"), "duplicate key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeAuditConfig(t, "bad", c.text)
			for _, args := range [][]string{
				{"check", "--config", path}, {"check", "--print", "--config", path}, {"run", "--log-level", "debug", "--config", path},
			} {
				res := w.run(c.name+": "+strings.Join(args[:len(args)-2], " "), args...)
				if res.code != 1 || !strings.Contains(res.stderr, c.want) {
					t.Errorf("%v: exit %d, want 1 with %q:\n%s", args[:len(args)-2], res.code, c.want, res.stderr)
				}
			}
		})
	}
}
