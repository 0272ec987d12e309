package park

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/failurelog"
	"github.com/atrelay/atrelay/internal/inflight"
)

// Header names added to a parked record. They have a prefix of their own,
// so that a parked record that is later dead-lettered keeps them apart from
// the dead-letter headers.
const (
	HeaderIntegration  = "atrelay.park.integration"
	HeaderReason       = "atrelay.park.reason"
	HeaderFirstFailure = "atrelay.park.first_failure"
	HeaderAttempts     = "atrelay.park.attempts"
	HeaderTopic        = "atrelay.park.source.topic"
	HeaderPartition    = "atrelay.park.source.partition"
	HeaderOffset       = "atrelay.park.source.offset"
	HeaderTime         = "atrelay.park.time"
)

// ErrClosed is what done receives for a write that Close ended, or that was
// started after Close.
var ErrClosed = errors.New("park: writer closed")

const (
	// attemptTimeout bounds one produce attempt, so that a write the
	// broker never answers fails, is logged and is retried rather than
	// hanging.
	attemptTimeout = 30 * time.Second

	// describeTimeout bounds the look for the topic in Open: a cluster
	// that does not answer must not keep the service from starting.
	describeTimeout = 10 * time.Second
)

// Parking says why a record is parked.
type Parking struct {
	// Integration names the site's integration.
	Integration string
	// Reason is the site's failure: no_answer, or the status that paused
	// it (http_404).
	Reason string
	// FirstFailure is when the site started failing.
	FirstFailure time.Time
	// Attempts is how often the record was sent before it was parked.
	Attempts int
}

// Config shapes a Writer.
type Config struct {
	// Topic is the parking topic. It need not exist when Open is called:
	// writes fail, are logged and retried until it does.
	Topic string
	// ClientOpts are the connection options (seed brokers, TLS, SASL,
	// hooks); the writer adds its producer options.
	ClientOpts []kgo.Opt
	// Logger receives the writer's lines; nil means slog.Default().
	Logger *slog.Logger
	// OnWriteError, when set, is called for every failed produce attempt.
	// It must not block.
	OnWriteError func(err error)
	// Backoff is the wait between failed attempts.
	Backoff backoff.Config
}

// Writer produces to the parking topic through a producer client of its
// own. It is safe for concurrent use.
type Writer struct {
	cl           *kgo.Client
	topic        string
	failures     *failurelog.Log
	onWriteError func(error)
	backoff      backoff.Config

	writes *inflight.Group
}

// Open returns a writer to cfg.Topic with its own producer client. It
// looks for the topic, and warns when it is missing (or the look fails):
// the service then runs, but a failing site cannot be parked until the
// topic exists. Open fails only when the client cannot be built.
func Open(ctx context.Context, cfg Config) (*Writer, error) {
	if cfg.Topic == "" {
		return nil, errors.New("park: no topic")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	w := &Writer{topic: cfg.Topic, onWriteError: cfg.OnWriteError, backoff: cfg.Backoff,
		failures: failurelog.New(log.With("topic", cfg.Topic), "parking topic write", slog.LevelError, failurelog.DefaultPeriod)}
	w.writes = inflight.New(ErrClosed)
	cl, err := kgo.NewClient(append(slices.Clip(cfg.ClientOpts), kgo.RecordDeliveryTimeout(attemptTimeout))...)
	if err != nil {
		return nil, fmt.Errorf("park: kafka client: %w", err)
	}
	w.cl = cl
	if err := findTopic(ctx, kadm.NewClient(cl), cfg.Topic); err != nil {
		log.Warn("park: the parking topic cannot be found: a site that fails for longer than park_after cannot be parked until it exists (create it, or set delivery.park_after: 0s)",
			"topic", cfg.Topic, "error", err)
	}
	return w, nil
}

// findTopic returns nil when topic exists.
func findTopic(ctx context.Context, adm *kadm.Client, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return err
	}
	d, ok := details[topic]
	if !ok {
		return errors.New("not in the cluster's metadata")
	}
	return d.Err
}

// Record returns the parked copy of rec: its key, value and headers,
// followed by the atrelay.park.* headers.
func (w *Writer) Record(rec *kgo.Record, p Parking, at time.Time) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+8)
	headers = append(headers, rec.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderIntegration, Value: []byte(p.Integration)},
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(p.Reason)},
		kgo.RecordHeader{Key: HeaderFirstFailure, Value: []byte(p.FirstFailure.UTC().Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: HeaderAttempts, Value: strconv.AppendInt(nil, int64(p.Attempts), 10)},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(at.UTC().Format(time.RFC3339Nano))},
	)
	return &kgo.Record{Topic: w.topic, Key: rec.Key, Value: rec.Value, Headers: headers}
}

// Write produces the parked copy of rec asynchronously and calls done once:
// with nil only after the broker acknowledged it, or with ctx's cause
// (ErrClosed after Close) when ctx ended first. Failed produces are logged
// and retried with backoff until ctx ends, so a parking topic that cannot
// be written stalls the record instead of losing it. rec must not change
// until done is called; done runs on a goroutine of the writer's, or before
// Write returns on a closed writer.
func (w *Writer) Write(ctx context.Context, rec *kgo.Record, p Parking, done func(error)) {
	at := time.Now()
	w.writes.Go(ctx, func(ctx context.Context) error { return w.write(ctx, rec, p, at) }, done)
}

func (w *Writer) write(ctx context.Context, rec *kgo.Record, p Parking, at time.Time) error {
	for attempt := 0; ; attempt++ {
		// A fresh record each attempt: kgo keeps the first attempt's
		// context in the record it is given.
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := w.cl.ProduceSync(actx, w.Record(rec, p, at)).FirstErr()
		cancel()
		if err == nil {
			w.failures.Succeeded()
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if w.onWriteError != nil {
			w.onWriteError(err)
		}
		w.failures.FailedContext(ctx, err, "source_topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset,
			"integration", p.Integration)
		if !backoff.Sleep(ctx, w.backoff.Delay(attempt)) {
			return context.Cause(ctx)
		}
	}
}

// Close ends the writes still in flight (their done gets ErrClosed), waits
// for their done callbacks to return, and closes the writer's client. Do
// not call it from a done callback. Calls after the first do nothing.
func (w *Writer) Close() {
	if !w.writes.Close() {
		return
	}
	w.failures.Flush()
	w.cl.Close()
}
