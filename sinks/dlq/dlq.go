// Package dlq writes records atrelay cannot process to the dead-letter topic:
// the original key, value and headers, plus headers saying where the record
// came from, which stage failed, and why.
package dlq

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Header names added to a dead-lettered record.
const (
	HeaderTopic      = "atrelay.source.topic"
	HeaderPartition  = "atrelay.source.partition"
	HeaderOffset     = "atrelay.source.offset"
	HeaderStage      = "atrelay.stage"
	HeaderReason     = "atrelay.reason"
	HeaderError      = "atrelay.error"
	HeaderTime       = "atrelay.time"
	HeaderHTTPStatus = "atrelay.http.status"
)

// maxErrorLen caps the error header.
const maxErrorLen = 1 << 10

// Failure says why a record is dead-lettered.
type Failure struct {
	Stage      string // decode, stages, deliver
	Reason     string // short label: corrupt, unknown_schema, http_400, …
	Err        error
	HTTPStatus int // the collect server's status, for delivery failures
}

// Writer produces to the dead-letter topic through a kgo client (the
// consumer's own is fine). It is safe for concurrent use.
type Writer struct {
	cl    *kgo.Client
	topic string
	now   func() time.Time
}

// New returns a writer to topic.
func New(cl *kgo.Client, topic string) *Writer {
	return &Writer{cl: cl, topic: topic, now: time.Now}
}

// Record returns the dead-letter copy of rec for failure f.
func (w *Writer) Record(rec *kgo.Record, f Failure) *kgo.Record {
	errText := ""
	if f.Err != nil {
		errText = f.Err.Error()
		if len(errText) > maxErrorLen {
			errText = errText[:maxErrorLen]
		}
	}
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+8)
	headers = append(headers, rec.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(f.Stage)},
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(f.Reason)},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(errText)},
		kgo.RecordHeader{Key: HeaderTime, Value: []byte(w.now().UTC().Format(time.RFC3339Nano))},
	)
	if f.HTTPStatus != 0 {
		headers = append(headers, kgo.RecordHeader{Key: HeaderHTTPStatus, Value: strconv.AppendInt(nil, int64(f.HTTPStatus), 10)})
	}
	return &kgo.Record{Topic: w.topic, Key: rec.Key, Value: rec.Value, Headers: headers}
}

// Write produces the dead-letter copy of rec asynchronously and calls done
// once: with nil only after the broker acknowledged it, or with ctx's error
// when ctx ended first. Failed produces are retried with backoff, so a DLQ
// that cannot be written stalls the record (and its partition's commits)
// instead of losing it.
func (w *Writer) Write(ctx context.Context, rec *kgo.Record, f Failure, done func(error)) {
	w.produce(ctx, w.Record(rec, f), 0, done)
}

func (w *Writer) produce(ctx context.Context, out *kgo.Record, attempt int, done func(error)) {
	w.cl.Produce(ctx, out, func(_ *kgo.Record, err error) {
		if err == nil {
			done(nil)
			return
		}
		if ctx.Err() != nil {
			done(ctx.Err())
			return
		}
		// Retry on a goroutine of our own: the promise callback must not block.
		go func() {
			wait := min(100*time.Millisecond<<min(attempt, 8), 10*time.Second)
			t := time.NewTimer(wait/2 + rand.N(wait/2+1))
			defer t.Stop()
			select {
			case <-t.C:
				w.produce(ctx, out, attempt+1, done)
			case <-ctx.Done():
				done(ctx.Err())
			}
		}()
	})
}
