package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/failurelog"
	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/relay/offsets"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// Decoder turns a record value into an event. *codec.Decoder is one. It
// returns a *codec.TransientError for failures that waiting fixes (the
// registry is down); every other error sends the record to the DLQ.
type Decoder interface {
	// DecodeIntoShared decodes value into ev; ev's strings may point into
	// value, which the relay keeps (the item's own copy) until the record
	// is settled. *codec.Decoder is one.
	DecodeIntoShared(ctx context.Context, value []byte, ev *codec.Event) error
}

// Sink sends one request and returns its settlement. *atinternet.Client is
// one. It retries transient failures itself until ctx ends; RetryLater
// therefore means ctx ended (shutdown, or a partition of the request was
// revoked) or the sink's own retry budget ran out. The relay sends at most
// delivery.concurrency requests per site at a time, oldest first.
type Sink interface {
	Send(ctx context.Context, req pipeline.Request) pipeline.Settlement
}

// Stages turn a decoded event (h.Event) into its hit and report what they
// changed to fit Piano's limits. *pipeline.Chain is one: Route, Map, then
// the custom stages. An error matching a *pipeline.Dropped filters the
// event; any other error sends it to the DLQ (see pipeline.Stage).
type Stages interface {
	Process(ctx context.Context, h *pipeline.Hit) (pipeline.Report, error)
}

// Metrics receives what the relay counts. *telemetry.Metrics is one; nil
// counts nothing.
type Metrics interface {
	Consumed(ctx context.Context, topic string, partition int32)
	Settled(ctx context.Context, outcome, reason string, n int64)
	DeliveryLatency(ctx context.Context, site string, d time.Duration)
	Commit(ctx context.Context, ok bool)
	// DLQWriteError counts a failed write to the dead-letter topic, by
	// reason (too_large, unknown_topic, timeout, error); the write is retried.
	DLQWriteError(ctx context.Context, reason string)
	// Abandoned counts records released unsettled, by reason: revoked and
	// lost (their partition moved to another member, which processes them
	// again), shutdown (the shutdown timeout ran out).
	Abandoned(ctx context.Context, reason string, n int64)
	// Adjusted counts property values the stages changed to fit Piano's
	// limits (pipeline.Report), by reason: truncated (a string cut to 255
	// characters), out_of_range (a decimal beyond ±1e15, left out).
	Adjusted(ctx context.Context, reason string, n int64)
}

// RebalanceMetrics is what a Metrics may also count: each change of the
// member's partitions, by kind: assigned, revoked (a normal rebalance, or
// leaving the group), lost (the group session ended). *telemetry.Metrics is
// one. It is apart from Metrics so that a Metrics without it still works.
type RebalanceMetrics interface {
	Rebalance(ctx context.Context, kind string)
}

// Config is what a Relay needs. Topic, Group, DLQTopic, Decoder, Stages
// and Sink are required; Delivery and Batch take their defaults where unset.
type Config struct {
	// Topic is consumed by the consumer group Group; records that cannot
	// be decoded or delivered go to DLQTopic.
	Topic, Group, DLQTopic string
	// ParkTopic, when set and Delivery.ParkAfter is above 0, receives the
	// records of a site that has failed for longer than ParkAfter; a
	// parking consumer in the same process (group Group+".park") delivers
	// them once the site answers again (park.go).
	ParkTopic string
	// StartLatest starts a group with no committed offset at the end of
	// the topic instead of its start.
	StartLatest bool
	Delivery    Delivery
	Batch       batch.Config
	// ClientOpts connect to the brokers (kafkaconn.Options) and add hooks
	// (tracing); the relay adds the group options itself.
	ClientOpts []kgo.Opt
	Decoder    Decoder
	// Stages route and map each decoded event into its hit, then run the
	// custom stages (a *pipeline.Chain).
	Stages Stages
	// Encode writes each hit's body once the stages are done
	// (atinternet.Encode); nil leaves the body as the stages wrote it.
	Encode  func(*pipeline.Hit)
	Sink    Sink
	Metrics Metrics
	Logger  *slog.Logger
	// Workers is how many goroutines decode and run the stages; 0 means
	// GOMAXPROCS.
	Workers int
	// OnReady, when set, is called with true when the member comes to own
	// at least one partition, and with false when it owns none any more or
	// starts shutting down. Readiness also wants recent contact with the
	// brokers: see Relay.LastContact.
	OnReady func(bool)
	// Tracer, when set, starts a process span per record, a child of its
	// receive span (or of its W3C traceparent header); the span ends when
	// the record is settled or abandoned. Install the same tracer's hooks
	// on the client (ClientOpts) for the receive and DLQ send spans.
	Tracer *Tracer
}

// validate checks c after filling its defaults.
func (c *Config) validate() error {
	var errs []error
	if c.Topic == "" || c.Group == "" || c.DLQTopic == "" {
		errs = append(errs, errors.New("relay: Topic, Group and DLQTopic are required"))
	}
	if c.Decoder == nil || c.Stages == nil || c.Sink == nil {
		errs = append(errs, errors.New("relay: Decoder, Stages and Sink are required"))
	}
	c.Delivery.Default()
	c.Batch.Default()
	errs = append(errs, fielderr.Prefix("delivery", c.Delivery.Validate()), fielderr.Prefix("delivery", c.Batch.Validate()), c.validatePark())
	return errors.Join(errs...)
}

// Relay is one member of the consumer group. Create it with New and run it
// with Run, once.
type Relay struct {
	cfg     Config
	log     *slog.Logger
	metrics Metrics

	cl      *kgo.Client
	book    *offsets.Book
	batcher *batch.Batcher
	sender  *sender
	dlq     *dlq.Writer
	park    *parking  // nil when parking is off (park.go)
	sites   siteBoard // the sites paused or parking, for Sites (pause.go)
	main    *Relay    // the relay whose parking consumer this is; nil otherwise (park.go)

	// deliverCtx outlives the consume context by up to shutdown_timeout, so
	// that work in flight at a signal can still settle.
	deliverCtx    context.Context
	cancelDeliver context.CancelFunc
	inflight      sync.WaitGroup // DLQ writes

	buffered atomic.Int64  // records tracked and not yet released
	space    chan struct{} // signalled each time a record is released

	commitMu   sync.Mutex // one commit at a time, periodic or on revoke
	commitLog  *failurelog.Log
	crashed    atomic.Bool
	decoder    Decoder // cfg.Decoder, its transient failures retried
	spans      *recordSpans
	readyState atomic.Bool

	// metadataCuts is how many times the brokers refused a commit's
	// metadata as too large: each halves the metadata budget (metadata.go).
	metadataCuts atomic.Int64
	// gaps carries the partitions found below their log start from one
	// group hook to the next (gap.go).
	gaps gapResets

	// stopAt is the shutdown deadline, in Unix nanoseconds, once shutdown
	// has begun (0 before): the shutdown drain and any revoke's drain
	// during shutdown end by it, so that the two never add up.
	stopAt atomic.Int64

	// What the Kafka client's hooks see (kafka.go): the last successful
	// fetch or group request, and a run of connection failures.
	lastContact   atomic.Int64 // Unix nanoseconds; 0 before any
	lastHeartbeat atomic.Int64 // Unix nanoseconds; 0 before any
	kafkaLog      *failurelog.Log
	groupLog      *failurelog.Log // group session errors, from polls
	fetchLog      *failurelog.Log // fetch errors of a partition, from polls

	lagMu sync.Mutex
	hwm   map[int32]int64 // high watermark per partition of the topic
	done  map[int32]int64 // last committed offset per partition

	items sync.Pool

	// onCommit, set only by tests (export_test.go), sees the offsets about
	// to be committed: on a real broker it is how they check the commit
	// invariant on every commit.
	onCommit func(map[string]map[int32]kgo.EpochOffset)
}

// closeGrace bounds the end of a shutdown, after the drain: the final
// commit and leaving the group. When it runs out, the Kafka client's context
// is cancelled, which fails whatever request is still in flight (a join
// waiting on the coordinator, a commit to a broker that is down): Run
// returns within shutdown_timeout + closeGrace, plus the client's own close
// (about a second at worst).
const closeGrace = 2 * time.Second

// summaryEvery is how often a run of repeated failures is summarised in
// the log.
const summaryEvery = 30 * time.Second

// New checks cfg and prepares a relay; it connects nothing yet.
func New(cfg Config) (*Relay, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	r := &Relay{
		cfg:       cfg,
		log:       cfg.Logger,
		metrics:   cfg.Metrics,
		space:     make(chan struct{}, 1),
		hwm:       make(map[int32]int64),
		done:      make(map[int32]int64),
		commitLog: failurelog.New(cfg.Logger, "offset commit", slog.LevelWarn, summaryEvery),
		groupLog:  failurelog.New(cfg.Logger.With("group", cfg.Group), "consumer group session", slog.LevelWarn, failurelog.DefaultPeriod),
		fetchLog:  failurelog.New(cfg.Logger, "fetch", slog.LevelWarn, failurelog.DefaultPeriod),
	}
	if r.metrics == nil {
		r.metrics = nopMetrics{}
	}
	r.spans = newRecordSpans(cfg.Tracer)
	r.decoder = &retryTransient{next: cfg.Decoder, backoff: cfg.Delivery.Backoff,
		log: failurelog.New(cfg.Logger, "schema registry lookup (the partition waits)", slog.LevelWarn, summaryEvery)}
	r.items.New = func() any { return new(item) }
	// Created here, not in Run, so that kill may race with Run's start.
	r.deliverCtx, r.cancelDeliver = context.WithCancel(context.Background())
	// Trackers' contexts end with deliverCtx: a request or DLQ write for a
	// record ends when its partition moves or at shutdown.
	r.book = offsets.NewBook(r.deliverCtx)
	if err := r.newParking(); err != nil {
		return nil, err
	}
	return r, nil
}

// Buffered returns how many records are between fetch and settlement.
func (r *Relay) Buffered() int64 { return r.buffered.Load() }

// Lag returns, per partition of the topic, the high watermark minus the last
// committed offset, as of the latest fetch and commit: for the partitions
// this member owns, and for those it lost (the group session ended, as when
// a broker is down) until its next assignment, at their last known value.
// A revoked partition is its new owner's to report.
func (r *Relay) Lag() map[int32]int64 {
	r.lagMu.Lock()
	defer r.lagMu.Unlock()
	lag := make(map[int32]int64, len(r.hwm))
	for p, h := range r.hwm {
		lag[p] = max(0, h-r.done[p])
	}
	return lag
}

// Run consumes until ctx is cancelled, then shuts down in order: stop
// fetching, finish the records already fetched, flush the batches, wait for
// deliveries and DLQ writes until shutdown_timeout after the cancellation,
// commit, leave the group. A revoke during shutdown drains until the same
// deadline; the final commit and the leave get closeGrace more, after which
// the Kafka client is closed whatever it waits for (a join in flight, a
// broker that is down). Records not settled by then were not committed: the
// partitions' next owner processes them. It returns nil after a clean
// shutdown.
func (r *Relay) Run(ctx context.Context) error {
	defer r.cancelDeliver()
	// The client's context ends closeGrace after the drain at the latest,
	// so that nothing the client waits for can hold Close.
	clientCtx, cancelClient := context.WithCancel(context.Background())
	defer cancelClient()
	if err := r.connect(ctx, clientCtx); err != nil {
		return err
	}
	defer r.dlq.Close()
	defer r.park.close()
	r.sender = newSender(r, r.cfg.Delivery.Concurrency)
	r.batcher = batch.New(r.cfg.Batch, r.sender.enqueue)
	workers, workersDone := r.startWorkers()
	var background sync.WaitGroup
	background.Go(func() { r.commitLoop(ctx) })
	background.Go(func() { r.watchGroup(ctx) })
	background.Go(func() { r.park.run(ctx) })

	r.poll(ctx, workers)

	r.drain(workers, workersDone)
	background.Wait()
	r.leave(cancelClient)
	return nil
}

// connect creates the consumer client (its context is clientCtx) and the
// dead-letter writer.
func (r *Relay) connect(ctx, clientCtx context.Context) error {
	r.kafkaLog = failurelog.New(r.log.With("seeds", seedBrokers(r.cfg.ClientOpts)), "kafka connection", slog.LevelWarn, failurelog.DefaultPeriod)
	cl, err := kgo.NewClient(append(r.clientOpts(), kgo.WithContext(clientCtx))...)
	if err != nil {
		return fmt.Errorf("relay: kafka client: %w", err)
	}
	r.cl = cl
	// The DLQ has a producer of its own, sized to the DLQ topic's
	// max.message.bytes: the consumer's client keeps the default 1 MB limit,
	// under which a larger record could never be dead-lettered.
	r.dlq, err = dlq.Open(ctx, dlq.Config{
		Topic: r.cfg.DLQTopic, ClientOpts: r.cfg.ClientOpts, Logger: r.log,
		OnWriteError: func(reason string) { r.metrics.DLQWriteError(r.deliverCtx, reason) },
		Backoff:      r.cfg.Delivery.Backoff,
	})
	if err != nil {
		cl.Close()
		return fmt.Errorf("relay: %w", err)
	}
	if err := r.park.open(ctx, r); err != nil {
		r.dlq.Close()
		cl.Close()
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// drain is the shutdown's one deadline, shutdown_timeout from now: the
// workers finish what they hold, the batches are flushed, and in-flight
// records settle until the deadline; what is still unsettled then is
// abandoned (its partition's next owner processes it again).
func (r *Relay) drain(workers []chan []*item, workersDone *sync.WaitGroup) {
	deadline := time.Now().Add(r.cfg.Delivery.ShutdownTimeout)
	r.stopAt.Store(deadline.UnixNano())
	r.setReady(false)
	timer := time.AfterFunc(time.Until(deadline), r.cancelDeliver)
	defer timer.Stop()
	if r.crashed.Load() {
		r.cancelDeliver()
	}
	for _, w := range workers {
		close(w)
	}
	workersDone.Wait()
	r.batcher.Close()
	r.waitSettled(r.deliverCtx)
	if n := r.buffered.Load(); n > 0 && !r.crashed.Load() {
		r.log.Warn("shutdown timeout: abandoning unsettled records; the next owner of their partitions redelivers them",
			"records", n, "timeout", r.cfg.Delivery.ShutdownTimeout.String())
	}
	r.cancelDeliver()
	r.sender.close()
	r.inflight.Wait()
}

// leave commits what settled and leaves the group, within closeGrace:
// then cancelClient cuts off whatever the client still waits for.
func (r *Relay) leave(cancelClient context.CancelFunc) {
	closeCtx, cancelClose := context.WithTimeout(context.Background(), closeGrace)
	defer cancelClose()
	stop := context.AfterFunc(closeCtx, cancelClient)
	defer stop()
	if !r.crashed.Load() {
		r.commit(closeCtx)
	}
	// Leaving the group calls revoked for every partition: it finds nothing
	// left to drain (the deadline has passed or everything settled) and
	// ends the assignments.
	r.cl.CloseAllowingRebalance()
	r.kafkaLog.Flush()
	r.groupLog.Flush()
	r.fetchLog.Flush()
}

func (r *Relay) clientOpts() []kgo.Opt {
	opts := append([]kgo.Opt{}, r.cfg.ClientOpts...)
	return append(opts,
		kgo.ConsumerGroup(r.cfg.Group),
		kgo.ConsumeTopics(r.cfg.Topic),
		kgo.ConsumeResetOffset(r.resetOffset()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(r.assigned),
		kgo.OnPartitionsRevoked(r.revoked),
		kgo.OnPartitionsLost(r.lost),
		// The settled set in the commit metadata (metadata.go), and
		// committed offsets below the log start (gap.go).
		kgo.OnOffsetsFetched(r.offsetsFetched),
		kgo.AdjustFetchOffsetsFn(r.adjustFetchOffsets),
		// Bound what the client reads ahead of max_buffered_events: fetched
		// batches are decompressed into records while they wait to be polled.
		kgo.FetchMaxBytes(4<<20),
		kgo.MaxConcurrentFetches(2),
		kgo.WithLogger(kafkaLogger(r.log)),
		kgo.WithHooks(kafkaHooks{r}),
	)
}

// kill makes the relay stop as a crash would: from now on nothing is
// committed, in-flight work is abandoned, and Run returns once its context is
// cancelled. Tests use it to prove that a crash loses nothing.
func (r *Relay) kill() {
	r.crashed.Store(true)
	r.cancelDeliver()
	r.park.kill()
}

// waitSettled returns once no record is buffered or ctx ends.
func (r *Relay) waitSettled(ctx context.Context) {
	for r.buffered.Load() > 0 {
		select {
		case <-r.space:
		case <-ctx.Done():
			return
		}
	}
}

// setReady reports readiness changes to OnReady, once per change. Once
// shutdown has begun the member is never ready again, whatever a rebalance
// during the drain or the leave assigns it.
func (r *Relay) setReady(ready bool) {
	ready = ready && r.stopAt.Load() == 0
	if r.readyState.Swap(ready) != ready && r.cfg.OnReady != nil {
		r.cfg.OnReady(ready)
	}
}

type nopMetrics struct{}

func (nopMetrics) Consumed(context.Context, string, int32)                {}
func (nopMetrics) Settled(context.Context, string, string, int64)         {}
func (nopMetrics) DeliveryLatency(context.Context, string, time.Duration) {}
func (nopMetrics) Commit(context.Context, bool)                           {}
func (nopMetrics) Abandoned(context.Context, string, int64)               {}
func (nopMetrics) DLQWriteError(context.Context, string)                  {}
func (nopMetrics) Adjusted(context.Context, string, int64)                {}
