package inflight_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/atrelay/atrelay/internal/inflight"
)

var errClosed = errors.New("closed")

// TestCloseEndsWritesAndWaits: a write blocked on its context ends at Close
// with the closed error as cause, and Close returns only after its done ran.
// Mutations caught: Close not cancelling the writes (the write never ends:
// synctest reports the deadlock); Close not waiting (done has not run when
// Close returns); the cause not passed (context.Canceled instead).
func TestCloseEndsWritesAndWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := inflight.New(errClosed)
		started := make(chan struct{})
		var got error
		doneRan := false
		g.Go(context.Background(), func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			time.Sleep(time.Second) // the write takes a while to give up
			return context.Cause(ctx)
		}, func(err error) { got, doneRan = err, true })
		<-started
		if !g.Close() {
			t.Fatal("first Close reported false")
		}
		if !doneRan || !errors.Is(got, errClosed) {
			t.Fatalf("after Close: done ran %v with %v, want it ran with the closed error", doneRan, got)
		}
		if g.Close() {
			t.Error("second Close reported true")
		}
	})
}

// TestGoAfterClose: done gets the closed error at once, and write never runs
// (mutation caught: the closed check removed).
func TestGoAfterClose(t *testing.T) {
	g := inflight.New(errClosed)
	g.Close()
	var got error
	g.Go(context.Background(), func(context.Context) error {
		t.Error("write ran after Close")
		return nil
	}, func(err error) { got = err })
	if !errors.Is(got, errClosed) {
		t.Fatalf("done got %v, want the closed error before Go returned", got)
	}
}

// TestWriteResult: done gets what write returned, and the write's context
// follows the caller's (mutation caught: done called with nil).
func TestWriteResult(t *testing.T) {
	g := inflight.New(errClosed)
	defer g.Close()
	boom := errors.New("boom")
	res := make(chan error, 1)
	g.Go(context.Background(), func(context.Context) error { return boom }, func(err error) { res <- err })
	if err := <-res; !errors.Is(err, boom) {
		t.Fatalf("done got %v, want write's error", err)
	}
}
