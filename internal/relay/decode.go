package relay

import (
	"context"
	"errors"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/backoff"
	"github.com/atrelay/atrelay/internal/failurelog"
)

// retryTransient is a Decoder that waits out transient failures (the
// schema registry is down): it retries with backoff until the decode
// succeeds, fails for good, or ctx ends — the record's assignment, so that
// a revoked partition's record does not hold its worker. Nothing is
// dead-lettered for a registry outage; the partition waits.
type retryTransient struct {
	next    Decoder
	backoff backoff.Config
	log     *failurelog.Log
}

// DecodeIntoShared returns nil, the permanent error, or ctx's cause wrapped in
// an error that Is context.Canceled's kind (errRetryEnded).
func (d *retryTransient) DecodeIntoShared(ctx context.Context, value []byte, ev *codec.Event) error {
	for attempt := 0; ; attempt++ {
		err := d.next.DecodeIntoShared(ctx, value, ev)
		var te *codec.TransientError
		if !errors.As(err, &te) {
			if err == nil && attempt > 0 {
				d.log.Succeeded()
			}
			return err
		}
		d.log.FailedContext(ctx, err, "attempt", attempt)
		if !backoff.Sleep(ctx, d.backoff.Delay(attempt)) {
			return &retryEnded{last: err, cause: context.Cause(ctx)}
		}
	}
}

// retryEnded is the error of a decode whose retries ctx ended: the record
// is abandoned (its partition moved, or shutdown), never dead-lettered.
type retryEnded struct{ last, cause error }

func (e *retryEnded) Error() string {
	return "decode retry ended (" + e.cause.Error() + "); last error: " + e.last.Error()
}

func (e *retryEnded) Unwrap() []error { return []error{e.cause, e.last} }
