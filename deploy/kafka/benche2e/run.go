package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/fixture"
)

// partitions of each benchmark topic, as in internal/relay's benchmarks.
const partitions = 6

// schemaID is the registry id the events are framed with.
const schemaID = 1

// workload is one measured run.
type workload struct {
	name string
	// events preloaded before atrelay starts (throughput runs), or produced
	// while it runs (steady).
	events int
	// perVisitor is how many consecutive events each visitor has: 1 makes
	// one request per event (per-visitor), 20 merges a visitor's events into
	// few requests (replay, backlog).
	perVisitor int
	steady     bool // produce at opts.rate while atrelay runs; measure latency
	// bin is the atrelay binary this run measures: -atrelay, or -baseline's
	// when label is "baseline".
	bin, label string
}

// result is one row of the table.
type result struct {
	workload  string
	label     string // "" for -atrelay, "baseline" for -baseline
	events    int64
	wall      time.Duration // atrelay start to last event (steady: the producing)
	cpu       time.Duration // atrelay's utime+stime over the measured span
	peakRSS   int64
	committed string // "yes", or why not
	latency   *stats // steady run only
	// kafkaP50, kafkaP99: the same latency seen by a plain consumer in the
	// driver (record timestamp to fetched): what the broker and the machine
	// add whatever atrelay does. Steady run only.
	kafkaP50, kafkaP99 time.Duration
	latencyOK          bool  // p99 <= linger + 50ms
	delivered          int64 // events the collector counted in all (duplicates show)
}

// driver runs the workloads against one broker and one registry.
type driver struct {
	opts     options
	dir      string // scratch: configs and logs
	adm      *kadm.Client
	cl       *kgo.Client
	registry string
	self     string // this executable, run again as the collector
	log      io.Writer
}

// createTopics creates topic and its .dlq and .park companions, and waits
// until each of topic's partitions has a leader (a real broker acknowledges
// CreateTopics before its metadata shows them).
func (d *driver) createTopics(ctx context.Context, topic string) error {
	resp, err := d.adm.CreateTopics(ctx, partitions, 1, nil, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	resp, err = d.adm.CreateTopics(ctx, 1, 1, nil, topic+".dlq", topic+".park")
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("create topics %s.dlq, .park: %w", topic, err)
	}
	return poll(ctx, 30*time.Second, "partition leaders of "+topic, func() (bool, error) {
		offs, err := d.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return false, nil
		}
		n := 0
		offs.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				n++
			}
		})
		return n == partitions, nil
	})
}

// deleteTopics frees the broker's disk for the next run; failure only
// logs.
func (d *driver) deleteTopics(ctx context.Context, topic string) {
	if _, err := d.adm.DeleteTopics(ctx, topic, topic+".dlq", topic+".park"); err != nil {
		fmt.Fprintf(d.log, "benche2e: delete topic %s: %v\n", topic, err)
	}
}

// record frames ev as the service reads it: Confluent framing, partitioned
// by visitor so that a visitor's events stay in order.
func record(enc *fixture.Encoder, topic string, ev *codec.Event) *kgo.Record {
	h := fnv.New32a()
	h.Write([]byte(ev.AnonymousUserID))
	return &kgo.Record{Topic: topic, Partition: int32(h.Sum32() % partitions), Value: enc.Confluent(schemaID, ev)}
}

// events generates n deliverable events (one app with an integration,
// production, every visitor with an idclient), perVisitor per visitor.
func events(seed uint64, n, perVisitor int) []codec.Event {
	return fixture.Generate(fixture.Options{Seed: seed, Events: n, EventsPerVisitor: perVisitor,
		Apps: []string{fixture.AppNews}, SandboxShare: -1, NoIDClientShare: -1})
}

// preload produces w.events events into topic, in chunks so that memory
// stays small for the 1M backlog.
func (d *driver) preload(ctx context.Context, topic string, w workload) error {
	enc := fixture.MustEncoder("")
	const chunk = 50000
	for done := 0; done < w.events; done += chunk {
		evs := events(uint64(done), min(chunk, w.events-done), w.perVisitor)
		recs := make([]*kgo.Record, len(evs))
		for i := range evs {
			recs[i] = record(enc, topic, &evs[i])
		}
		if err := d.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return fmt.Errorf("preload %s: %w", topic, err)
		}
	}
	return nil
}

// collectorProc is a running collector process.
type collectorProc struct {
	cmd  *exec.Cmd
	url  string
	http *http.Client
}

// startCollector runs this executable again as a collector, in its own
// process, and returns once it listens.
func (d *driver) startCollector(ctx context.Context, latency bool) (*collectorProc, error) {
	args := []string{"collector", "-listen", "127.0.0.1:0"}
	if latency {
		args = append(args, "-latency")
	}
	cmd := exec.CommandContext(ctx, d.self, args...)
	cmd.Stderr = d.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	addr := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		a, err := readListening(out)
		if err != nil {
			errc <- err
			return
		}
		addr <- a
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case a := <-addr:
		return &collectorProc{cmd: cmd, url: "http://" + a, http: &http.Client{Timeout: 10 * time.Second}}, nil
	case err := <-errc:
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, errors.New("collector: no address after 30s")
	}
}

// stats reads the collector's counts (and percentiles if asked).
func (c *collectorProc) stats(ctx context.Context, percentiles bool) (stats, error) {
	u := c.url + "/stats"
	if percentiles {
		u += "?percentiles=1"
	}
	var s stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return s, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return s, fmt.Errorf("collector stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("collector stats: %w", err)
	}
	return s, nil
}

func (c *collectorProc) reset(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/reset", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("collector reset: %w", err)
	}
	resp.Body.Close()
	return nil
}

func (c *collectorProc) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
}

// relayProc is a running atrelay.
type relayProc struct {
	cmd    *exec.Cmd
	pid    int
	exited chan struct{} // closed once it has exited (err then set)
	err    error
	logf   string
	// started is when the process was started: a throughput run's
	// events/s counts from here.
	started time.Time
}

// writeConfig writes the service's config for topic: the delivery defaults
// but linger, every event deliverable, telemetry listeners off (ports
// would clash between concurrent runs on a shared machine).
func (d *driver) writeConfig(name, topic, collectURL string) (string, error) {
	names := strings.Join(append(append([]string{}, fixture.TableEvents...), fixture.OtherEvents...), ", ")
	text := fmt.Sprintf(`# benche2e %s
kafka: {brokers: [%q], topic: %s, group: %s}
codec: {schema_registry: {url: %q}}
delivery: {linger: %s}
integrations:
  - {name: news, app_id: %s, site_id: 1, collect_domain: %q, environments: [PRODUCTION, SANDBOX],
     events: [%s]}
telemetry: {metrics_listen: "off", health_listen: "off"}
`, name, strings.Join(d.opts.brokers, ","), topic, topic+"-group", d.registry, d.opts.linger, fixture.AppNews, collectURL, names)
	path := filepath.Join(d.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	return path, nil
}

// startRelay runs the atrelay binary on cfg, its log to a file. A ctx that
// ends stops it with SIGTERM, then SIGKILL after its shutdown budget.
func (d *driver) startRelay(ctx context.Context, bin, name, cfg string) (*relayProc, error) {
	logf := filepath.Join(d.dir, name+".log")
	f, err := os.Create(logf)
	if err != nil {
		return nil, fmt.Errorf("atrelay log: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "run", "--config", cfg, "--log-format", "json")
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 45 * time.Second
	started := time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &relayProc{cmd: cmd, pid: cmd.Process.Pid, exited: make(chan struct{}), logf: logf, started: started}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

// stop ends atrelay as an operator would (SIGTERM: stop fetching, flush,
// commit), killing it after 45 s.
func (p *relayProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(45 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return errors.New("atrelay did not stop within 45s of SIGTERM: killed")
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		return p.err
	}
	if p.err != nil {
		return fmt.Errorf("atrelay exited: %w (log: %s)", p.err, p.logf)
	}
	return nil
}

// logTail is the end of atrelay's log, for an error message.
func (p *relayProc) logTail() string {
	data, _ := os.ReadFile(p.logf)
	if len(data) > 3000 {
		data = data[len(data)-3000:]
	}
	return string(data)
}

// waitEvents polls the collector until it has counted want events, atrelay
// exits, or timeout passes.
func waitEvents(ctx context.Context, c *collectorProc, p *relayProc, want int64, timeout time.Duration) error {
	var last stats
	err := poll(ctx, timeout, fmt.Sprintf("%d events at the collector", want), func() (bool, error) {
		select {
		case <-p.exited:
			return false, fmt.Errorf("atrelay exited: %v; log tail:\n%s", p.err, p.logTail())
		default:
		}
		s, err := c.stats(ctx, false)
		if err != nil {
			return false, err
		}
		last = s
		return s.Events >= want, nil
	})
	if err != nil {
		return fmt.Errorf("%w (collector counted %d)", err, last.Events)
	}
	return nil
}

// committedAtEnd polls, for up to timeout, whether the group has committed
// the end offset of every partition of topic; it returns "yes" or what was
// missing at the deadline.
func (d *driver) committedAtEnd(ctx context.Context, topic string, timeout time.Duration) string {
	group := topic + "-group"
	var why string
	err := poll(ctx, timeout, "committed == end", func() (bool, error) {
		ends, err := d.adm.ListEndOffsets(ctx, topic)
		if err != nil {
			why = err.Error()
			return false, nil
		}
		committed, err := d.adm.FetchOffsetsForTopics(ctx, group, topic)
		if err != nil {
			why = err.Error()
			return false, nil
		}
		var behind []string
		ends.Each(func(e kadm.ListedOffset) {
			c, ok := committed.Lookup(topic, e.Partition)
			at := int64(-1)
			if ok && c.Err == nil {
				at = c.At
			}
			if at != e.Offset && !(e.Offset == 0 && at < 0) {
				behind = append(behind, fmt.Sprintf("p%d %d/%d", e.Partition, at, e.Offset))
			}
		})
		why = "no: " + strings.Join(behind, ", ")
		return len(behind) == 0, nil
	})
	if err != nil {
		return why
	}
	return "yes"
}

// poll calls done every 50 ms until it reports true or an error, ctx ends,
// or timeout passes.
func poll(ctx context.Context, timeout time.Duration, what string, done func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// startPair starts a collector (recording latencies when latency is set)
// and atrelay on topic with a configuration that sends to it. On an
// error nothing is left running.
func (d *driver) startPair(ctx context.Context, w workload, topic string, latency bool) (*collectorProc, *relayProc, error) {
	coll, err := d.startCollector(ctx, latency)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := d.writeConfig(w.name, topic, coll.url)
	if err == nil {
		var p *relayProc
		if p, err = d.startRelay(ctx, w.bin, w.name, cfg); err == nil {
			return coll, p, nil
		}
	}
	coll.stop()
	return nil, nil, err
}

// runThroughput measures one preloaded workload: atrelay starts on a
// backlog of w.events and is measured from its start until the collector
// has them all.
func (d *driver) runThroughput(ctx context.Context, w workload) (result, error) {
	r := result{workload: w.name, label: w.label, events: int64(w.events)}
	topic := fmt.Sprintf("benche2e-%s-%d", w.name, time.Now().UnixNano())
	if err := d.createTopics(ctx, topic); err != nil {
		return r, err
	}
	defer d.deleteTopics(context.WithoutCancel(ctx), topic)
	t0 := time.Now()
	if err := d.preload(ctx, topic, w); err != nil {
		return r, err
	}
	fmt.Fprintf(d.log, "benche2e: %s: %d events preloaded in %s\n", w.name, w.events, time.Since(t0).Round(time.Millisecond))
	coll, p, err := d.startPair(ctx, w, topic, false)
	if err != nil {
		return r, err
	}
	defer coll.stop()
	defer p.stop()
	if err := waitEvents(ctx, coll, p, r.events, d.opts.runTimeout); err != nil {
		return r, fmt.Errorf("%s: %w", w.name, err)
	}
	r.wall = time.Since(p.started)
	// The process is new: its whole CPU time is the run's.
	if r.cpu, err = readCPU(p.pid); err != nil {
		return r, err
	}
	if r.peakRSS, err = readPeakRSS(p.pid); err != nil {
		return r, err
	}
	r.committed = d.committedAtEnd(ctx, topic, 15*time.Second)
	if err := p.stop(); err != nil {
		return r, fmt.Errorf("%s: %w", w.name, err)
	}
	if s, err := coll.stats(ctx, false); err == nil {
		r.delivered = s.Events
	}
	return r, nil
}

// runSteady measures delivery latency at a constant rate: atrelay runs on
// an empty topic, a warm-up proves it consumes, then events are produced at
// opts.rate for opts.steadyFor, each with its record timestamp and its
// event_created_at (event_date in the hit) set to the same millisecond.
func (d *driver) runSteady(ctx context.Context, w workload) (result, error) {
	r := result{workload: w.name, label: w.label}
	topic := fmt.Sprintf("benche2e-%s-%d", w.name, time.Now().UnixNano())
	if err := d.createTopics(ctx, topic); err != nil {
		return r, err
	}
	defer d.deleteTopics(context.WithoutCancel(ctx), topic)
	// Events are generated in chunks as they are sent, so that the driver
	// stays small on a shared machine.
	const chunk = 5000
	var evs []codec.Event
	next := func(i int) *codec.Event {
		if i%chunk == 0 {
			evs = events(uint64(i), min(chunk, w.events-i), w.perVisitor)
		}
		return &evs[i%chunk]
	}
	coll, p, err := d.startPair(ctx, w, topic, true)
	if err != nil {
		return r, err
	}
	defer coll.stop()
	defer p.stop()
	// The producer does not linger: the latency measured is atrelay's.
	prod, err := kgo.NewClient(kgo.SeedBrokers(d.opts.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0), kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	if err != nil {
		return r, fmt.Errorf("producer: %w", err)
	}
	defer prod.Close()
	enc := fixture.MustEncoder("")
	var failed atomic.Int64
	var firstErr atomic.Pointer[error] // the first failure; errors differ in type, so not an atomic.Value
	produce := func(ev *codec.Event) {
		now := time.Now().Truncate(time.Millisecond)
		ev.EventCreatedAt = now.UTC()
		rec := record(enc, topic, ev)
		rec.Timestamp = now
		prod.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}

	// The baseline consumer starts now, so that its own start-up is over
	// (it has the warm-up's records) before the measured records.
	base, err := startBaseline(ctx, d.opts.brokers, topic, w.events)
	if err != nil {
		return r, err
	}
	defer base.stop()

	// Warm-up: atrelay joined the group and delivers.
	const warm = 100
	for _, ev := range events(1<<40, warm, w.perVisitor) {
		produce(&ev)
	}
	if err := waitEvents(ctx, coll, p, warm, 2*time.Minute); err != nil {
		return r, fmt.Errorf("%s warm-up: %w", w.name, err)
	}
	if err := poll(ctx, 2*time.Minute, "the baseline consumer's warm-up", func() (bool, error) { return base.seen.Load() >= warm, nil }); err != nil {
		return r, err
	}
	if err := coll.reset(ctx); err != nil {
		return r, err
	}
	cpu0, err := readCPU(p.pid)
	if err != nil {
		return r, err
	}

	// Constant rate: every 10 ms, produce what the schedule says is due.
	total := w.events
	start := time.Now()
	base.measureFrom(start.Truncate(time.Millisecond))
	tick := time.NewTicker(10 * time.Millisecond)
	sent := 0
	for sent < total {
		select {
		case <-ctx.Done():
			tick.Stop()
			return r, context.Cause(ctx)
		case <-tick.C:
		}
		due := min(total, int(time.Since(start).Seconds()*float64(d.opts.rate)))
		for ; sent < due; sent++ {
			produce(next(sent))
		}
	}
	tick.Stop()
	r.wall = time.Since(start)
	if err := prod.Flush(ctx); err != nil {
		return r, fmt.Errorf("producer flush: %w", err)
	}
	if n := failed.Load(); n > 0 {
		return r, fmt.Errorf("%d records not produced, the first: %w", n, *firstErr.Load())
	}
	r.events = int64(total)
	if err := waitEvents(ctx, coll, p, r.events, 2*time.Minute); err != nil {
		return r, fmt.Errorf("%s: %w", w.name, err)
	}
	cpu1, err := readCPU(p.pid)
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	if r.peakRSS, err = readPeakRSS(p.pid); err != nil {
		return r, err
	}
	s, err := coll.stats(ctx, true)
	if err != nil {
		return r, err
	}
	if s.Samples != int(s.Events) {
		return r, fmt.Errorf("%s: %d latency samples for %d events (%d unreadable event_date)", w.name, s.Samples, s.Events, s.Bad)
	}
	r.latency = &s
	if r.kafkaP50, r.kafkaP99, err = base.wait(30 * time.Second); err != nil {
		return r, err
	}
	r.latencyOK = s.P99ms <= float64(d.opts.linger+50*time.Millisecond)/float64(time.Millisecond)
	r.committed = d.committedAtEnd(ctx, topic, 15*time.Second)
	if err := p.stop(); err != nil {
		return r, fmt.Errorf("%s: %w", w.name, err)
	}
	if s, err := coll.stats(ctx, false); err == nil {
		r.delivered = s.Events
	}
	return r, nil
}

// baseline is a plain consumer of the steady run's topic in the driver
// process: its record timestamp to fetch latency is what Kafka and the
// machine's load add, the floor under atrelay's.
type baseline struct {
	cancel context.CancelFunc
	done   chan struct{}
	total  int
	seen   atomic.Int64    // records fetched, measured or not
	from   atomic.Int64    // UnixMilli of the first measured record's timestamp
	lat    []time.Duration // written by the consumer until done
	err    error
}

// startBaseline consumes topic from its start, keeping the latency of
// records stamped at or after measureFrom's time, until it has total of
// them.
func startBaseline(ctx context.Context, brokers []string, topic string, total int) (*baseline, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second))
	if err != nil {
		return nil, fmt.Errorf("baseline consumer: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	b := &baseline{cancel: cancel, done: make(chan struct{}), total: total, lat: make([]time.Duration, 0, total)}
	b.from.Store(math.MaxInt64)
	go func() {
		defer close(b.done)
		defer cl.Close()
		for len(b.lat) < total {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			if ctx.Err() != nil {
				return
			}
			fs.EachError(func(t string, p int32, err error) {
				if b.err == nil {
					b.err = fmt.Errorf("baseline consumer %s[%d]: %w", t, p, err)
				}
			})
			from := b.from.Load()
			fs.EachRecord(func(r *kgo.Record) {
				b.seen.Add(1)
				if r.Timestamp.UnixMilli() >= from {
					b.lat = append(b.lat, now.Sub(r.Timestamp))
				}
			})
		}
	}()
	return b, nil
}

// measureFrom starts the measurement: records stamped at or after t.
func (b *baseline) measureFrom(t time.Time) { b.from.Store(t.UnixMilli()) }

// wait returns the p50 and p99 once the consumer has every record, or an
// error after timeout.
func (b *baseline) wait(timeout time.Duration) (p50, p99 time.Duration, err error) {
	select {
	case <-b.done:
	case <-time.After(timeout):
		b.cancel()
		<-b.done
	}
	if b.err != nil {
		return 0, 0, b.err
	}
	if len(b.lat) < b.total {
		return 0, 0, fmt.Errorf("baseline consumer: %d records of %d within %s", len(b.lat), b.total, timeout)
	}
	return percentile(b.lat, 50), percentile(b.lat, 99), nil
}

func (b *baseline) stop() {
	b.cancel()
	<-b.done
}
