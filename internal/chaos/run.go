package chaos

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/schemas"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// The sites of the two integrations every run configures; events of
// fixture.UnknownApp are filtered (no_integration).
const (
	siteFitness = 100001
	siteNews    = 100002
)

// parkGroupSuffix makes the parking consumer's group, <group>.park
// (README, "The delivery guarantee").
const parkGroupSuffix = ".park"

// Settings are the delivery keys a run's configuration uses: short, so
// that faults show within seconds.
type Settings struct {
	Concurrency     int
	RequestTimeout  time.Duration
	BackoffMax      time.Duration
	MaxBuffered     int
	CommitInterval  time.Duration
	ShutdownTimeout time.Duration
	ProbeInterval   time.Duration
	ParkAfter       time.Duration // 0: the default (2m)
	// SessionTimeout is kafka.session_timeout: a killed or stopped
	// member's partitions move after it, on kfake and on Apache Kafka.
	SessionTimeout time.Duration
}

func defaultSettings() Settings {
	return Settings{Concurrency: 4, RequestTimeout: time.Second, BackoffMax: 500 * time.Millisecond, MaxBuffered: 2000,
		CommitInterval: 100 * time.Millisecond, ShutdownTimeout: 5 * time.Second, ProbeInterval: time.Second,
		// The brokers' default group.min.session.timeout.ms: the shortest
		// Apache Kafka accepts, not kgo's 45 s.
		SessionTimeout: 6 * time.Second}
}

// inFlightBound is what can be re-sent when a member's requests are cut
// off: concurrency requests of at most 50 events, per site (two sites).
func (s Settings) inFlightBound() int { return s.Concurrency * 50 * 2 }

// Run is one run of a scenario: its broker, registry, collector, topics,
// ledger and atrelay processes.
type Run struct {
	Scenario string
	N        int
	Full     bool // the whole suite (longer faults) rather than the subset
	Dir      string
	Kafka    *Kafka
	Reg      *Registry
	Col      *Collector
	Led      *Ledger
	Settings Settings

	Topic, DLQTopic, ParkTopic, Group string
	Parts                             int32

	// Bound is how many duplicates the scenario allows; ExactDuplicates,
	// when set, is how many it requires.
	Bound           int
	ExactDuplicates bool
	// Pending, when set, says the feature the scenario needs is not in
	// the service yet: the run is reported, not failed.
	Pending string
	notes   []string

	bin     string
	adm     *kadm.Client
	prod    *kgo.Client
	procs   []*Process
	members int
	stop    context.CancelFunc
	sampled chan struct{}
}

// Note adds a line to the run's notes.
func (r *Run) Note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// prepare names the run's topics and group and creates its ledger and
// collector, before the scenario runs.
func (r *Run) prepare() {
	stamp := strconv.FormatInt(time.Now().UnixNano()%1e10, 36)
	base := fmt.Sprintf("chaos.%s.%d.%s", strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(r.Scenario), r.N, stamp)
	r.Topic, r.Group = base, base+".group"
	r.DLQTopic, r.ParkTopic = base+".dlq", base+".park"
	r.Led = newLedger(r.Topic, r.DLQTopic, r.ParkTopic, r.Group)
	r.Col = newCollector(r.Led)
}

// setup creates the run's topics and registry, and starts watching its
// commits.
func (r *Run) setup(ctx context.Context, topicConfigs map[string]*string, dlqTopic bool) error {
	if r.Parts == 0 {
		r.Parts = 4
	}
	var err error
	if r.Reg, err = newRegistry(r.Topic + "-value"); err != nil {
		return err
	}
	if r.prod, err = r.Kafka.client(kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(16<<20), kgo.MaxBufferedBytes(64<<20)); err != nil {
		return err
	}
	r.adm = kadm.NewClient(r.prod)
	if err := r.Kafka.createTopic(ctx, r.adm, r.Topic, r.Parts, topicConfigs); err != nil {
		return err
	}
	if dlqTopic {
		if err := r.Kafka.createTopic(ctx, r.adm, r.DLQTopic, 1, nil); err != nil {
			return err
		}
	}
	if err := r.Kafka.createTopic(ctx, r.adm, r.ParkTopic, 2, nil); err != nil {
		return err
	}
	if r.Kafka.fake != nil {
		r.Kafka.watch(r.Led)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.stop, r.sampled = cancel, make(chan struct{})
	go func() { defer close(r.sampled); sample(sctx, r.adm, r.Led) }()
	return nil
}

// close stops everything the run started.
func (r *Run) close() {
	for _, p := range r.procs {
		if !p.Exited() {
			p.Kill()
		}
	}
	if r.stop != nil {
		r.stop()
		<-r.sampled
	}
	if r.Col != nil {
		r.Col.Close()
	}
	if r.Reg != nil {
		r.Reg.Close()
	}
	if r.prod != nil {
		r.prod.Close()
	}
}

// Events generates n events, visitors of perVisitor events each, spread
// over the two integrations' apps and an app with none.
func (r *Run) Events(seed uint64, n, perVisitor int) []codec.Event {
	return fixture.Generate(fixture.Options{Seed: seed + uint64(r.N)*1000, Events: n, EventsPerVisitor: perVisitor,
		Apps: []string{fixture.AppFitness, fixture.AppNews, fixture.UnknownApp}, OnlyTableEvents: true,
		SandboxShare: -1, NoIDClientShare: -1})
}

// expect is what must become of ev under the configuration of config().
func expect(ev *codec.Event) (want, int64) {
	switch ev.AppID {
	case fixture.AppFitness:
		return wantDeliver, siteFitness
	case fixture.AppNews:
		return wantDeliver, siteNews
	}
	return wantFilter, 0
}

func (r *Run) partition(visitor string) int32 {
	h := fnv.New32a()
	h.Write([]byte(visitor))
	return int32(h.Sum32() % uint32(r.Parts))
}

// Item is one record to produce and what must become of it.
type Item struct {
	Partition int32
	Key       []byte
	Value     []byte
	Time      time.Time
	EventID   string
	Want      want
	Site      int64
}

// EventItems encodes events (Confluent framing, schema id) keyed and
// partitioned by visitor; bad lists event ids the collector will reject,
// which must be dead-lettered.
func (r *Run) EventItems(events []codec.Event, id int, bad map[string]bool) []Item {
	enc := fixture.MustEncoder("")
	if id == schemaIDv1 {
		v1, err := schemas.FS.ReadFile("subscription_event.v1.avsc")
		if err != nil {
			panic(err) // embedded at build time
		}
		enc = fixture.MustEncoder(string(v1))
	}
	items := make([]Item, 0, len(events))
	for i := range events {
		ev := &events[i]
		w, site := expect(ev)
		if bad[ev.EventID] {
			w = wantDLQ
		}
		items = append(items, Item{Partition: r.partition(ev.AnonymousUserID), Key: []byte(ev.AnonymousUserID),
			Value: enc.Confluent(id, ev), EventID: ev.EventID, Want: w, Site: site})
	}
	return items
}

// Produce writes items and enters each in the ledger with its offset.
func (r *Run) Produce(ctx context.Context, items []Item) error {
	recs := make([]*kgo.Record, len(items))
	for i, it := range items {
		recs[i] = &kgo.Record{Topic: r.Topic, Partition: it.Partition, Key: it.Key, Value: it.Value, Timestamp: it.Time}
	}
	const chunk = 2000
	for i := 0; i < len(recs); i += chunk {
		if err := r.prod.ProduceSync(ctx, recs[i:min(i+chunk, len(recs))]...).FirstErr(); err != nil {
			return fmt.Errorf("produce: %w", err)
		}
	}
	for i, it := range items {
		r.Led.add(&record{pos: pos{recs[i].Partition, recs[i].Offset}, id: it.EventID, want: it.Want, site: it.Site, ts: recs[i].Timestamp})
	}
	return nil
}

// config writes a member's configuration and returns its path.
func (r *Run) config(member, collect string, s Settings) (string, error) {
	parkAfter := "2m"
	if s.ParkAfter > 0 {
		parkAfter = s.ParkAfter.String()
	}
	brokers := `"` + strings.Join(r.Kafka.brokers, `","`) + `"`
	events := strings.Join(fixture.TableEvents, ", ")
	text := fmt.Sprintf(`kafka: {brokers: [%s], topic: %q, group: %q, dlq_topic: %q, park_topic: %q, session_timeout: %s}
codec: {framing: auto, schema_registry: {url: %q}}
delivery:
  max_events: 50
  linger: 20ms
  concurrency: %d
  request_timeout: %s
  backoff: {min: 20ms, max: %s}
  max_buffered_events: %d
  commit_interval: %s
  shutdown_timeout: %s
  reject_probe_interval: %s
  park_after: %s
integrations:
  - {name: fitness, app_id: %s, site_id: %d, collect_domain: %q, collect_path: subscription, events: [%s]}
  - {name: news, app_id: %s, site_id: %d, collect_domain: %q, events: [%s],
     idclient_from: ["attribute:at_internet_id_client", user_id, anonymous_user_id]}
telemetry: {metrics_listen: "off", health_listen: "off"}
`, brokers, r.Topic, r.Group, r.DLQTopic, r.ParkTopic, s.SessionTimeout, r.Reg.URL(), s.Concurrency, s.RequestTimeout, s.BackoffMax,
		s.MaxBuffered, s.CommitInterval, s.ShutdownTimeout, s.ProbeInterval, parkAfter,
		fixture.AppFitness, siteFitness, collect, events, fixture.AppNews, siteNews, collect, events)
	path := filepath.Join(r.Dir, member+".yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	return path, nil
}

// Start starts an atrelay member (`atrelay run`) with the run's settings
// and an endpoint of its own at the collector.
func (r *Run) Start() (*Process, error) {
	r.members++
	name := fmt.Sprintf("member-%d", r.members)
	collect, err := r.Col.Endpoint(name)
	if err != nil {
		return nil, err
	}
	path, err := r.config(name, collect, r.Settings)
	if err != nil {
		return nil, err
	}
	p, err := startProcess(r.bin, r.Dir, name, "run", "--config", path, "--log-format", "json")
	if err != nil {
		return nil, err
	}
	r.procs = append(r.procs, p)
	return p, nil
}

// Command runs an atrelay command to its end and returns its exit code
// and output.
func (r *Run) Command(ctx context.Context, name string, args ...string) (int, string, error) {
	p, err := startProcess(r.bin, r.Dir, name, args...)
	if err != nil {
		return 0, "", err
	}
	r.procs = append(r.procs, p)
	code, err := p.Wait(ctx)
	return code, strings.Join(p.Lines(), "\n"), err
}

// Terminate sends SIGTERM and requires a clean exit (0) within the
// shutdown timeout and the leave's grace.
func (r *Run) Terminate(p *Process) error {
	// A signal before the service handles signals would kill it: wait
	// for its first line, which it logs once it does.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err := p.WaitLog(ctx, 0, "atrelay starting")
	cancel()
	if err != nil {
		return err
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	code, err := p.waitTimeout(r.Settings.ShutdownTimeout + 10*time.Second)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%s: exit %d after SIGTERM, want 0:\n%s", p.Name, code, p.tail(20))
	}
	return nil
}

// WaitDelivered waits until n unique events are acknowledged.
func (r *Run) WaitDelivered(ctx context.Context, n int) error {
	return poll(ctx, 20*time.Millisecond, func() (bool, error) {
		return r.delivered() >= n, nil
	}, func() string { return fmt.Sprintf("%d events delivered, waiting for %d", r.delivered(), n) })
}

func (r *Run) delivered() int {
	r.Led.mu.Lock()
	defer r.Led.mu.Unlock()
	n := 0
	for _, rec := range r.Led.recs {
		if len(rec.deliveries) > 0 {
			n++
		}
	}
	return n
}

// poll calls cond every interval until it is true, fails, or ctx ends;
// state says where things stand for the error.
func poll(ctx context.Context, every time.Duration, cond func() (bool, error), state func() string) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", state(), ctx.Err())
		case <-t.C:
		}
	}
}

// committedAll reports whether group has committed every partition of
// topic to its end (a partition with no records needs no commit).
func (r *Run) committedAll(ctx context.Context, group, topic string) (bool, string, error) {
	ends, err := r.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return false, "", err
	}
	offs, err := r.adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, "", err
	}
	done, state := true, ""
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := offs.Lookup(topic, o.Partition)
		at := int64(-1)
		if ok && c.Err == nil {
			at = c.At
		}
		if o.Offset > 0 && at < o.Offset {
			done = false
			state += fmt.Sprintf(" %s[%d] %d/%d", topic, o.Partition, at, o.Offset)
		}
	})
	return done, state, nil
}

// WaitSettled waits until the group and the parking group have committed
// every record: the service says it has settled everything.
func (r *Run) WaitSettled(ctx context.Context) error {
	var state string
	return poll(ctx, 200*time.Millisecond, func() (bool, error) {
		main, s1, err := r.committedAll(ctx, r.Group, r.Topic)
		if err != nil {
			state = err.Error()
			return false, nil
		}
		parked, s2, err := r.committedAll(ctx, r.Group+parkGroupSuffix, r.ParkTopic)
		if err != nil {
			state = err.Error()
			return false, nil
		}
		state = "committed:" + s1 + s2
		return main && parked, nil
	}, func() string { return fmt.Sprintf("not settled (%s; %d delivered)", state, r.delivered()) })
}

// readTopics reads the parking and DLQ topics into the ledger.
func (r *Run) readTopics(ctx context.Context) error {
	for _, topic := range []string{r.ParkTopic, r.DLQTopic} {
		ends, err := r.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return fmt.Errorf("end offsets of %s: %w", topic, err)
		}
		want := map[int32]int64{}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil && o.Offset > 0 {
				want[o.Partition] = o.Offset
			}
		})
		if len(want) == 0 {
			continue
		}
		cl, err := r.Kafka.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(64<<20))
		if err != nil {
			return err
		}
		for len(want) > 0 {
			fs := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				cl.Close()
				return fmt.Errorf("read %s: %w", topic, ctx.Err())
			}
			fs.EachRecord(func(rec *kgo.Record) {
				at := pos{rec.Partition, rec.Offset}
				hs := make([]kmsgHeader, len(rec.Headers))
				for i, h := range rec.Headers {
					hs[i] = kmsgHeader{Key: h.Key, Value: h.Value}
				}
				if topic == r.DLQTopic {
					srcTopic, src, ok := sourceOf(true, hs)
					if ok {
						r.Led.sawDLQRecord(at, srcTopic, src, header(rec, dlq.HeaderReason))
					}
				} else if _, src, ok := sourceOf(false, hs); ok {
					r.Led.sawParkRecord(at, src)
				}
				if rec.Offset+1 >= want[rec.Partition] {
					delete(want, rec.Partition)
				}
			})
		}
		cl.Close()
	}
	return nil
}

func header(rec *kgo.Record, key string) string {
	for _, h := range rec.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// finish waits until everything is settled, stops the members (each must
// exit 0), reads the DLQ and parking topics and closes the books.
func (r *Run) finish(ctx context.Context) error {
	if err := r.WaitSettled(ctx); err != nil {
		return err
	}
	var errs []error
	for _, p := range r.procs {
		if !p.Exited() {
			errs = append(errs, r.Terminate(p))
		}
	}
	return errors.Join(errs...)
}

// assigned is the log line of a member given partitions of the topic
// (the parking consumer's lines name the parking topic).
func (r *Run) assigned() string {
	return `"msg":"partitions assigned","topic":"` + r.Topic + `"`
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(b), nil
}

func writeFile(path, text string) error {
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
