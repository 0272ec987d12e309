package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/relay/offsets"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
	"github.com/atrelay/atrelay/sinks/atinternet"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// Decoder turns a record value into an event. *codec.Decoder is one. It
// returns a *codec.TransientError for failures that waiting fixes (the
// registry is down); every other error sends the record to the DLQ.
type Decoder interface {
	DecodeInto(ctx context.Context, value []byte, ev *codec.Event) error
}

// Sink delivers requests and reports each one's outcome to settle, once, as
// soon as it ends. *atinternet.Client is one. A nil error means delivered; a
// *atinternet.RejectedError means permanently refused; any other error means
// the sink gave up without an answer (its context ended).
type Sink interface {
	Deliver(ctx context.Context, reqs []pipeline.Request, settle func(pipeline.Request, error))
}

// Metrics receives what the relay counts. *telemetry.Metrics is one; nil
// counts nothing.
type Metrics interface {
	Consumed(ctx context.Context, topic string, partition int32)
	Settled(ctx context.Context, outcome, reason string, n int64)
	DeliveryLatency(ctx context.Context, site string, d time.Duration)
	Commit(ctx context.Context, ok bool)
}

// Outcomes of a settled record, as counted by Metrics.Settled.
const (
	OutcomeDelivered = "delivered"
	OutcomeFiltered  = "filtered"
	OutcomeDLQ       = "dlq"
)

// Config is what a Relay needs. Kafka, Delivery, Decoder, Stages and Sink are
// required.
type Config struct {
	Kafka    config.Kafka
	Delivery config.Delivery
	// ClientOpts connect to the brokers (kafkaconn.Options) and add hooks
	// (tracing); the relay adds the group options itself.
	ClientOpts []kgo.Opt
	Decoder    Decoder
	// Stages runs filter, rename, enrich and encode; see pipeline.Stage for
	// how a drop and a failure are told apart.
	Stages  pipeline.Stage
	Sink    Sink
	Metrics Metrics
	Logger  *slog.Logger
	// Workers is how many goroutines decode and run the stages; 0 means
	// GOMAXPROCS.
	Workers int
	// OnCommit, when set, is called with the offsets about to be committed,
	// before the commit is sent. Tests use it to check the commit invariant;
	// it must not block.
	OnCommit func(map[string]map[int32]kgo.EpochOffset)
	// OnReady, when set, is called with true once the member has an
	// assignment, and with false when it starts shutting down.
	OnReady func(bool)
	// Tracer, when set, starts a process span per record, its parent taken
	// from the record's W3C traceparent header; the span ends when the
	// record is settled or abandoned. Install the same tracer's hooks on the
	// client (ClientOpts) for the receive spans.
	Tracer *kotel.Tracer
}

func (c *Config) validate() error {
	var errs []error
	if c.Kafka.Topic == "" || c.Kafka.Group == "" || c.Kafka.DLQTopic == "" {
		errs = append(errs, errors.New("relay: kafka topic, group and dlq_topic are required"))
	}
	if c.Decoder == nil || c.Stages == nil || c.Sink == nil {
		errs = append(errs, errors.New("relay: Decoder, Stages and Sink are required"))
	}
	d := c.Delivery
	if d.MaxBufferedEvents <= 0 || d.CommitInterval <= 0 || d.ShutdownTimeout <= 0 || d.MaxEvents <= 0 || d.MaxBytes <= 0 || d.Linger <= 0 {
		errs = append(errs, errors.New("relay: delivery max_buffered_events, max_events, max_bytes, linger, commit_interval and shutdown_timeout must be positive (config.Load sets them)"))
	}
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
	dlq     *dlq.Writer

	// deliverCtx outlives the consume context by up to shutdown_timeout, so
	// that work in flight at a signal can still settle.
	deliverCtx    context.Context
	cancelDeliver context.CancelFunc
	inflight      sync.WaitGroup // deliveries and DLQ writes

	buffered atomic.Int64  // records tracked and not yet released
	space    chan struct{} // signalled each time a record is released

	commitMu  sync.Mutex // one commit at a time, periodic or on revoke
	crashed   atomic.Bool
	rebalance time.Duration

	lagMu sync.Mutex
	hwm   map[int32]int64 // high watermark per partition of the topic
	done  map[int32]int64 // last committed offset per partition

	items sync.Pool
}

// item is one record on its way: the record, its tracker, and the event and
// hit built from it. Items are pooled; an item belongs to exactly one
// goroutine at a time and is released once its record is settled or
// abandoned.
type item struct {
	rec     *kgo.Record
	tr      *offsets.Tracker
	created time.Time  // the event's creation, for the delivery latency
	span    trace.Span // the process span, when tracing
	hit     pipeline.Hit
}

// scratch is a worker's reusable decode target and property buffer: a
// record keeps neither once its hit is encoded.
type scratch struct {
	ev    codec.Event
	props []pipeline.Prop
}

// rebalanceTimeout is kgo's default; the revoke drain stays well below it so
// that the member is not kicked out of the group while draining.
const rebalanceTimeout = 60 * time.Second

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
		book:      offsets.NewBook(),
		space:     make(chan struct{}, 1),
		rebalance: rebalanceTimeout,
		hwm:       make(map[int32]int64),
		done:      make(map[int32]int64),
	}
	if r.metrics == nil {
		r.metrics = nopMetrics{}
	}
	r.items.New = func() any { return new(item) }
	// Created here, not in Run, so that kill may race with Run's start.
	r.deliverCtx, r.cancelDeliver = context.WithCancel(context.Background())
	return r, nil
}

// Buffered returns how many records are between fetch and settlement.
func (r *Relay) Buffered() int64 { return r.buffered.Load() }

// Lag returns, per partition of the topic, the high watermark minus the last
// committed offset, as of the latest fetch and commit.
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
// fetching, finish the records already fetched, flush the batches, wait up to
// shutdown_timeout for deliveries and DLQ writes, commit, leave the group.
// It returns nil after a clean shutdown.
func (r *Relay) Run(ctx context.Context) error {
	defer r.cancelDeliver()

	start := kgo.NewOffset().AtStart()
	if r.cfg.Kafka.StartFrom == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	opts := append([]kgo.Opt{}, r.cfg.ClientOpts...)
	opts = append(opts,
		kgo.ConsumerGroup(r.cfg.Kafka.Group),
		kgo.ConsumeTopics(r.cfg.Kafka.Topic),
		kgo.ConsumeResetOffset(start),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RebalanceTimeout(r.rebalance),
		kgo.OnPartitionsAssigned(r.assigned),
		kgo.OnPartitionsRevoked(r.revoked),
		kgo.OnPartitionsLost(r.lost),
		// Bound what the client reads ahead of max_buffered_events: fetched
		// batches are decompressed into records while they wait to be polled.
		kgo.FetchMaxBytes(4<<20),
		kgo.MaxConcurrentFetches(2),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("relay: kafka client: %w", err)
	}
	r.cl = cl
	r.dlq = dlq.New(cl, r.cfg.Kafka.DLQTopic)
	r.batcher = batch.New(batch.Config{
		MaxEvents: r.cfg.Delivery.MaxEvents,
		MaxBytes:  r.cfg.Delivery.MaxBytes,
		Linger:    r.cfg.Delivery.Linger,
	}, r.flush)

	workers := make([]chan []*item, r.cfg.Workers)
	var workersDone sync.WaitGroup
	for i := range workers {
		workers[i] = make(chan []*item, 4)
		workersDone.Add(1)
		go func(in <-chan []*item) {
			defer workersDone.Done()
			var sc scratch
			for items := range in {
				for _, it := range items {
					r.process(it, &sc)
				}
			}
		}(workers[i])
	}

	commitDone := make(chan struct{})
	go func() {
		defer close(commitDone)
		r.commitLoop(ctx)
	}()

	r.poll(ctx, workers)

	// Shutdown. Everything below is bounded by shutdown_timeout through
	// deliverCtx.
	if r.cfg.OnReady != nil {
		r.cfg.OnReady(false)
	}
	timer := time.AfterFunc(r.cfg.Delivery.ShutdownTimeout, r.cancelDeliver)
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
	if r.buffered.Load() > 0 {
		r.log.Warn("shutdown timeout: abandoning unsettled records; the next owner of their partitions redelivers them",
			"records", r.buffered.Load(), "timeout", r.cfg.Delivery.ShutdownTimeout)
	}
	r.cancelDeliver()
	r.inflight.Wait()
	<-commitDone

	if !r.crashed.Load() {
		commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Delivery.ShutdownTimeout)
		r.commit(commitCtx)
		cancel()
	}
	// Leaving the group calls revoked for every partition: it finds nothing
	// left to drain or commit, and closes the trackers.
	cl.CloseAllowingRebalance()
	return nil
}

// poll fetches and tracks records until ctx ends, keeping at most
// max_buffered_events records between fetch and settlement.
func (r *Relay) poll(ctx context.Context, workers []chan []*item) {
	max := int64(r.cfg.Delivery.MaxBufferedEvents)
	shards := make([][]*item, len(workers))
	for {
		for r.buffered.Load() >= max {
			select {
			case <-r.space:
			case <-ctx.Done():
				return
			}
		}
		fs := r.cl.PollRecords(ctx, int(max-r.buffered.Load()))
		if fs.IsClientClosed() {
			r.cl.AllowRebalance()
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				r.log.Warn("fetch error", "topic", topic, "partition", p, "error", err)
			}
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			r.lagMu.Lock()
			r.hwm[p.Partition] = p.HighWatermark
			r.lagMu.Unlock()
			tr := r.book.Tracker(p.Topic, p.Partition)
			shard := int(p.Partition) % len(workers)
			for _, rec := range p.Records {
				// A record of a partition we no longer own, or one already
				// tracked, is not ours to process: its owner will.
				if tr == nil || !tr.Track(rec.Offset, rec.LeaderEpoch) {
					continue
				}
				it := r.items.Get().(*item)
				it.rec, it.tr = rec, tr
				r.buffered.Add(1)
				shards[shard] = append(shards[shard], it)
			}
		})
		// Every record of this poll is tracked: rebalances may run again.
		r.cl.AllowRebalance()
		for i, s := range shards {
			if len(s) > 0 {
				workers[i] <- s
				shards[i] = make([]*item, 0, len(s))
			}
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// process decodes one record and runs the stages; the hit then goes to the
// batcher, or the record is settled as filtered or sent to the DLQ. The event
// is decoded into the worker's scratch: once the hit is encoded, a buffered
// record keeps only its record and body, which is what bounds memory at
// max_buffered_events records.
func (r *Relay) process(it *item, sc *scratch) {
	ctx := r.deliverCtx
	if r.cfg.Tracer != nil {
		_, it.span = r.cfg.Tracer.WithProcessSpan(it.rec)
		// Stages see the span; cancellation still follows deliverCtx.
		ctx = trace.ContextWithSpan(ctx, it.span)
	}
	r.metrics.Consumed(ctx, it.rec.Topic, it.rec.Partition)
	for attempt := 0; ; attempt++ {
		err := r.cfg.Decoder.DecodeInto(ctx, it.rec.Value, &sc.ev)
		if err == nil {
			break
		}
		var te *codec.TransientError
		if !errors.As(err, &te) {
			r.deadLetter(it, dlq.Failure{Stage: "decode", Reason: codecReason(err), Err: err})
			return
		}
		// The registry is down: the partition waits, nothing is dead-lettered.
		r.log.Warn("decode: transient failure, retrying", "partition", it.rec.Partition, "offset", it.rec.Offset, "attempt", attempt, "error", err)
		if !sleep(ctx, r.backoff(attempt)) {
			r.abandon(it)
			return
		}
	}
	it.created = sc.ev.EventCreatedAt
	it.hit.Event, it.hit.Ref, it.hit.Props = &sc.ev, it, sc.props[:0]
	err := r.cfg.Stages.Process(ctx, &it.hit)
	// The body now carries everything the hit sends.
	sc.props, it.hit.Props, it.hit.Event = it.hit.Props[:0], nil, nil
	if err != nil {
		if reason, ok := pipeline.DropReason(err); ok {
			r.settle(it, OutcomeFiltered, reason)
			return
		}
		r.deadLetter(it, dlq.Failure{Stage: "stages", Reason: "stage_error", Err: err})
		return
	}
	r.batcher.Add(&it.hit)
}

// flush is the batcher's callback: it hands a site's requests to the sink on
// their own goroutine, so that the batcher never waits on the network.
func (r *Relay) flush(_ *pipeline.Site, reqs []pipeline.Request) {
	r.inflight.Add(1)
	go func() {
		defer r.inflight.Done()
		r.cfg.Sink.Deliver(r.deliverCtx, reqs, r.delivered)
	}()
}

// delivered settles the records of one request by its outcome.
func (r *Relay) delivered(req pipeline.Request, err error) {
	var rej *atinternet.RejectedError
	switch {
	case err == nil:
		now := time.Now()
		for _, h := range req.Hits {
			it := h.Ref.(*item)
			r.metrics.DeliveryLatency(r.deliverCtx, req.Site.Integration, now.Sub(it.created))
			r.settle(it, OutcomeDelivered, "")
		}
	case errors.As(err, &rej):
		for _, h := range req.Hits {
			r.deadLetter(h.Ref.(*item), dlq.Failure{Stage: "deliver", Reason: rej.Reason(), Err: err, HTTPStatus: rej.Status})
		}
	default:
		// The sink retries transient failures until its context ends, so
		// this is shutdown: the next owner redelivers these records.
		for _, h := range req.Hits {
			r.abandon(h.Ref.(*item))
		}
	}
}

// deadLetter writes the record to the DLQ; it is settled only once the
// broker acknowledged the write.
func (r *Relay) deadLetter(it *item, f dlq.Failure) {
	r.inflight.Add(1)
	r.dlq.Write(r.deliverCtx, it.rec, f, func(err error) {
		defer r.inflight.Done()
		if err != nil {
			r.log.Error("dlq: write failed; the record stays unsettled", "partition", it.rec.Partition, "offset", it.rec.Offset, "error", err)
			r.abandon(it)
			return
		}
		r.log.Warn("record sent to the dead-letter topic", "stage", f.Stage, "reason", f.Reason,
			"partition", it.rec.Partition, "offset", it.rec.Offset, "error", f.Err)
		r.settle(it, OutcomeDLQ, f.Reason)
	})
}

// settle marks the record settled in its tracker (refused, harmlessly, when
// its partition was revoked meanwhile) and releases it. The span ends first,
// so that a commit covering the record implies its span has ended.
func (r *Relay) settle(it *item, outcome, reason string) {
	if it.span != nil {
		it.span.SetAttributes(attribute.String("atrelay.outcome", outcome), attribute.String("atrelay.reason", reason))
		it.span.End()
	}
	it.tr.Settle(it.rec.Offset)
	r.metrics.Settled(r.deliverCtx, outcome, reason, 1)
	r.release(it)
}

// abandon releases a record without settling it: its partition cannot commit
// past it, and whoever owns the partition next processes it again.
func (r *Relay) abandon(it *item) {
	if it.span != nil {
		it.span.SetStatus(codes.Error, "abandoned: left unsettled for the partition's next owner")
		it.span.End()
	}
	r.release(it)
}

func (r *Relay) release(it *item) {
	it.rec, it.tr, it.created, it.span = nil, nil, time.Time{}, nil
	it.hit.Reset()
	r.items.Put(it)
	r.buffered.Add(-1)
	select {
	case r.space <- struct{}{}:
	default:
	}
}

// HitSpan returns the span context of the record a hit came from, or an
// invalid one when the relay is not tracing: the sink links each request's
// span to its records' spans with it.
func HitSpan(h *pipeline.Hit) trace.SpanContext {
	if it, ok := h.Ref.(*item); ok && it.span != nil {
		return it.span.SpanContext()
	}
	return trace.SpanContext{}
}

// kill makes the relay stop as a crash would: from now on nothing is
// committed, in-flight work is abandoned, and Run returns once its context is
// cancelled. Tests use it to prove that a crash loses nothing.
func (r *Relay) kill() {
	r.crashed.Store(true)
	r.cancelDeliver()
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

func (r *Relay) backoff(attempt int) time.Duration {
	lo, hi := r.cfg.Delivery.Backoff.Min, r.cfg.Delivery.Backoff.Max
	if lo <= 0 {
		lo = 200 * time.Millisecond
	}
	if hi < lo {
		hi = lo
	}
	d := lo << min(attempt, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// codecReason is the DLQ and metric label of a decode failure.
func codecReason(err error) string {
	var pe *codec.PermanentError
	if errors.As(err, &pe) {
		return pe.Reason()
	}
	return "decode_error"
}

type nopMetrics struct{}

func (nopMetrics) Consumed(context.Context, string, int32)                {}
func (nopMetrics) Settled(context.Context, string, string, int64)         {}
func (nopMetrics) DeliveryLatency(context.Context, string, time.Duration) {}
func (nopMetrics) Commit(context.Context, bool)                           {}
