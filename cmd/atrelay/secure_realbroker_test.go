package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/sandbox"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/schemas"
)

// secureWorld is a topic with its DLQ topic on the real broker (made and
// read through its PLAINTEXT listener), a registry and a collector: what
// `atrelay run` needs, reached over one of the broker's secured listeners.
type secureWorld struct {
	kafka      *testkafka.Cluster
	sec        *testkafka.Secure
	topic      string
	group      string
	registry   string
	collector  *sandbox.Collector
	collectURL string
	events     int
	bad        []byte // the undecodable record's value
}

// newSecureWorld produces events Avro events of the news app, every one
// of which its integration delivers, then one record no decoder reads.
func newSecureWorld(t *testing.T, events int) *secureWorld {
	t.Helper()
	kafka := testkafka.New(t)
	w := &secureWorld{kafka: kafka, sec: kafka.Secure(t), events: events, bad: []byte("not an avro record")}
	w.topic, w.group = kafka.Name(t, "events"), kafka.Name(t, "group")
	kafka.CreateTopic(t, w.topic, 1)
	kafka.CreateTopic(t, w.topic+".dlq", 1)
	reg := srfake.New()
	t.Cleanup(reg.Close)
	const schemaID = 1
	reg.SeedSchema(w.topic+"-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	w.registry = reg.URL()
	w.collector = sandbox.New()
	srv := httptest.NewServer(w.collector)
	t.Cleanup(srv.Close)
	w.collectURL = srv.URL
	enc := fixture.MustEncoder("")
	evs := fixture.Generate(fixture.Options{Seed: 11, Events: events, EventsPerVisitor: 1, Apps: []string{fixture.AppNews}, OnlyTableEvents: true})
	recs := make([]*kgo.Record, 0, events+1)
	for i := range evs {
		recs = append(recs, &kgo.Record{Topic: w.topic, Key: []byte(evs[i].AnonymousUserID), Value: enc.Confluent(schemaID, &evs[i])})
	}
	recs = append(recs, &kgo.Record{Topic: w.topic, Value: w.bad})
	kafka.Produce(t, recs...)
	return w
}

// config writes the service's configuration: kafka is the YAML of the
// kafka section's connection keys (brokers, tls, sasl). The SASL password
// is the environment reference ${ATRELAY_TEST_SASL_PASSWORD}, as an
// operator would write it.
func (w *secureWorld) config(t *testing.T, kafka string) string {
	t.Helper()
	return writeFile(t, fmt.Sprintf(`
kafka: {topic: %q, group: %q, %s}
codec: {schema_registry: {url: %q}}
delivery: {linger: 20ms, commit_interval: 100ms, shutdown_timeout: 5s, backoff: {min: 10ms, max: 200ms}}
integrations:
  - {name: news, app_id: %q, site_id: 100002, collect_domain: %q, events: [%s],
     environments: [PRODUCTION, SANDBOX], idclient_from: ["attribute:at_internet_id_client", user_id, anonymous_user_id]}
telemetry: {metrics_listen: "off", health_listen: "off"}
`, w.topic, w.group, kafka, w.registry, fixture.AppNews, w.collectURL, strings.Join(fixture.TableEvents, ", ")))
}

// listener is the YAML of a kafka section's connection keys.
type listener struct {
	brokers         []string
	ca, cert, key   string
	mechanism, user string
	password        string // YAML scalar as written, e.g. "${VAR}"
}

func (l listener) yaml() string {
	s := fmt.Sprintf(`brokers: ["%s"], tls: {enabled: true, ca_file: %q, cert_file: %q, key_file: %q}`,
		strings.Join(l.brokers, `","`), l.ca, l.cert, l.key)
	if l.mechanism != "" {
		s += fmt.Sprintf(`, sasl: {mechanism: %s, username: %s, password: %q}`, l.mechanism, l.user, l.password)
	}
	return s
}

// secureListeners are the broker's secured listeners, each with the
// settings that reach it.
func secureListeners(sec *testkafka.Secure) map[string]listener {
	sasl := func(mech string) listener {
		return listener{brokers: sec.SASLSSL, ca: sec.CAFile, mechanism: mech, user: sec.User(mech), password: "${" + testkafka.EnvSASLPassword + "}"}
	}
	return map[string]listener{
		"tls":           {brokers: sec.SSL, ca: sec.CAFile},
		"mtls":          {brokers: sec.MTLS, ca: sec.CAFile, cert: sec.CertFile, key: sec.KeyFile},
		"PLAIN":         sasl("PLAIN"),
		"SCRAM-SHA-256": sasl("SCRAM-SHA-256"),
		"SCRAM-SHA-512": sasl("SCRAM-SHA-512"),
	}
}

// TestRunOverSecuredListeners is issue 15's "security, proven": `atrelay
// run` consumes from each secured listener of a real Apache Kafka — TLS
// verified against the test CA, mutual TLS, and SASL PLAIN, SCRAM-SHA-256
// and SCRAM-SHA-512 over TLS — delivers every event to the collector,
// dead-letters the undecodable record through the same connection (the
// service knows no other address: the broker advertises the listener it
// was reached on), commits the topic's end offset, and exits 0 on SIGTERM.
//
// Mutations caught (each tried): kafkaconn.Options dropping
// kgo.DialTLSConfig (every row exits 1 before delivering); Options giving
// the SHA-256 mechanism for SCRAM-SHA-512 (that row exits 1, "SASL
// authentication failed": its user exists for SHA-512 only); the DLQ
// writer's client without TLS (kgo.DialTLSConfig(nil) appended in
// dlq.Open: the undecodable record is never written, the commit stays at
// 40 of 41).
func TestRunOverSecuredListeners(t *testing.T) {
	const events = 40
	sec := testkafka.New(t).Secure(t) // skips unless the broker has secured listeners
	for _, name := range []string{"tls", "mtls", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"} {
		t.Run(name, func(t *testing.T) {
			w := newSecureWorld(t, events)
			cfg := w.config(t, secureListeners(sec)[name].yaml())
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			var stderr lockedBuffer
			code := make(chan int, 1)
			go func() {
				code <- cli(ctx, []string{"run", "--config", cfg, "--log-level", "info"}, new(bytes.Buffer), &stderr)
			}()

			deadline, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			want := map[int32]int64{0: events + 1}
			done := make(chan struct{})
			go func() {
				defer close(done)
				if err := w.collector.WaitHits(deadline, events); err != nil {
					return
				}
				w.waitCommitted(t, deadline, want)
			}()
			select {
			case c := <-code:
				t.Fatalf("run exited %d before delivering\n%s", c, stderr.String())
			case <-done:
			}
			if n := len(w.collector.Hits()); n < events {
				t.Fatalf("%d of %d events delivered\n%s", n, events, stderr.String())
			}
			if got := w.kafka.Committed(t, w.group, w.topic); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("committed %v, want %v\n%s", got, want, stderr.String())
			}
			dlq := w.kafka.ReadAll(t, w.topic+".dlq", 1)
			if len(dlq) != 1 || !bytes.Equal(dlq[0].Value, w.bad) {
				t.Errorf("DLQ holds %d records, want the undecodable one", len(dlq))
			}
			stop()
			select {
			case c := <-code:
				if c != 0 {
					t.Errorf("run exited %d after SIGTERM, want 0\n%s", c, stderr.String())
				}
			case <-time.After(30 * time.Second):
				t.Fatal("run did not stop within 30 s of its cancellation")
			}
			if strings.Contains(stderr.String(), sec.Password) {
				t.Error("the log shows the SASL password")
			}
		})
	}
}

// waitCommitted polls the group's committed offsets (the broker has no
// notification for them) until they are want or ctx ends.
func (w *secureWorld) waitCommitted(t *testing.T, ctx context.Context, want map[int32]int64) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for fmt.Sprint(w.kafka.Committed(t, w.group, w.topic)) != fmt.Sprint(want) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// TestSecureMisconfigurationFailsAtStart: a wrong password, a CA that did
// not sign the broker's certificate, a broker address the certificate
// does not name, and a listener requiring a client certificate without
// one: `atrelay run` exits 1 at start (instead of retrying for ever) with
// an error naming the cause and the keys to fix, and `check --connect`
// names the same cause on its kafka brokers line. Nothing is consumed: the
// group commits nothing.
//
// Mutations caught (each tried): Service.Run without kafkaconn.Verify
// (run retries until the test's deadline ends it, exit 0); checkKafka
// without kafkaconn.Explain (check --connect prints the client's error
// without the cause's words: every row fails).
func TestSecureMisconfigurationFailsAtStart(t *testing.T) {
	w := newSecureWorld(t, 1)
	ok := secureListeners(w.sec)
	wrongPassword := ok["SCRAM-SHA-512"]
	wrongPassword.password = "not-the-password"
	unknownCA := ok["PLAIN"]
	unknownCA.ca = w.sec.OtherCAFile
	wrongHost := ok["PLAIN"]
	_, port, _ := net.SplitHostPort(wrongHost.brokers[0])
	wrongHost.brokers = []string{net.JoinHostPort("localhost", port)}
	noClientCert := ok["mtls"]
	noClientCert.cert, noClientCert.key = "", ""
	tests := []struct {
		name  string
		l     listener
		cause string
	}{
		{"wrong password", wrongPassword, "SASL authentication failed (check kafka.sasl.username, kafka.sasl.password and kafka.sasl.mechanism)"},
		{"unknown CA", unknownCA, "signed by an authority the client does not trust (check kafka.tls.ca_file)"},
		{"wrong host name", wrongHost, "does not name the host dialed (check kafka.brokers"},
		{"no client certificate", noClientCert, "refused the handshake (a listener requiring a client certificate?) (check kafka.tls.cert_file and kafka.tls.key_file)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := w.config(t, tt.l.yaml())
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var stderr lockedBuffer
			start := time.Now()
			if code := cli(ctx, []string{"run", "--config", cfg}, new(bytes.Buffer), &stderr); code != 1 {
				t.Fatalf("run: exit %d, want 1\n%s", code, stderr.String())
			}
			t.Logf("run exited 1 after %s", time.Since(start).Round(time.Millisecond))
			if ctx.Err() != nil {
				t.Fatal("run exited only when the test's deadline ended it")
			}
			if !strings.Contains(stderr.String(), "atrelay: kafka: ") || !strings.Contains(stderr.String(), tt.cause) {
				t.Errorf("run's stderr lacks %q:\n%s", tt.cause, stderr.String())
			}

			var out, errOut bytes.Buffer
			if code := cli(ctx, []string{"check", "--connect", "--config", cfg}, &out, &errOut); code != 1 {
				t.Fatalf("check --connect: exit %d, want 1\n%s%s", code, out.String(), errOut.String())
			}
			line := "FAIL kafka brokers " + strings.Join(tt.l.brokers, ",") + ": kafka: "
			if !strings.Contains(out.String(), line) || !strings.Contains(out.String(), tt.cause) {
				t.Errorf("check --connect lacks %q ... %q:\n%s", line, tt.cause, out.String())
			}
			all := stderr.String() + out.String() + errOut.String()
			if strings.Contains(all, w.sec.Password) {
				t.Error("the output shows the SASL password")
			}
			if got := w.kafka.Committed(t, w.group, w.topic); len(got) != 0 {
				t.Errorf("the group committed %v", got)
			}
		})
	}
}
