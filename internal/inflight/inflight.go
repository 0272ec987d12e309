// Package inflight runs asynchronous writes that a Close can end and wait
// for: the lifecycle the dead-letter and parking writers share. A write runs
// on its own goroutine with a context that ends, with the group's closed
// error as its cause, when Close is called; its done callback runs exactly
// once; Close returns only after every done callback has returned.
package inflight

import (
	"context"
	"sync"
)

// Group is a set of writes in flight. Build it with New; it is safe for
// concurrent use.
type Group struct {
	closedErr error

	mu      sync.Mutex
	closed  bool
	writes  sync.WaitGroup
	closing context.Context // ends every write in flight when Close is called
	close   context.CancelFunc
}

// New returns a group whose writes end with closedErr at Close, and whose
// Go calls after Close get closedErr at once.
func New(closedErr error) *Group {
	g := &Group{closedErr: closedErr}
	g.closing, g.close = context.WithCancel(context.Background())
	return g
}

// Go runs write(ctx') on a goroutine of its own, where ctx' is ctx that also
// ends at Close (cause: the closed error), then calls done with write's
// result. After Close, done(closed error) runs before Go returns.
func (g *Group) Go(ctx context.Context, write func(context.Context) error, done func(error)) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		done(g.closedErr)
		return
	}
	g.writes.Add(1)
	g.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(g.closing, func() { cancel(g.closedErr) })
	go func() {
		defer g.writes.Done()
		err := write(ctx)
		stop()
		cancel(nil)
		done(err)
	}()
}

// Close ends the writes in flight and waits for their done callbacks to
// return; do not call it from one. It reports whether this call closed the
// group (false for every call after the first).
func (g *Group) Close() bool {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.closed = true
	g.mu.Unlock()
	g.close()
	g.writes.Wait()
	return true
}
