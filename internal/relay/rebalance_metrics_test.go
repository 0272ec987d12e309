package relay_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/internal/relay"
)

// rebalances is the tests' counter with relay.RebalanceMetrics too.
type rebalances struct {
	*counter
	mu    sync.Mutex
	kinds map[string]int
}

var _ relay.RebalanceMetrics = (*rebalances)(nil)

func (r *rebalances) Rebalance(_ context.Context, kind string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kinds[kind]++
}

func (r *rebalances) get() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, v := range r.kinds {
		out[k] = v
	}
	return out
}

// TestRebalancesCounted: a Metrics that also counts rebalances sees the
// single member's assignment at the start and the revocation when it
// leaves the group at shutdown, and no loss.
// Mutation caught: assigned not calling countRebalance (0 assigned).
func TestRebalancesCounted(t *testing.T) {
	e := newEnv(t, 2)
	e.produce(fixture.Generate(fixture.Options{Seed: 13, Events: 20}), 0)
	m := &rebalances{counter: e.metrics, kinds: map[string]int{}}
	opts, report := e.watchCommits()
	opts.Metrics = m
	s := e.start(e.config(200, 5*time.Second), opts)
	e.finish(waitCtx(t), report)
	if got := m.get(); got["assigned"] != 1 || got["revoked"] != 0 || got["lost"] != 0 {
		t.Errorf("while running: %v, want assigned 1 and nothing else", got)
	}
	s.stop(t)
	if got := m.get(); got["assigned"] != 1 || got["revoked"] != 1 || got["lost"] != 0 {
		t.Errorf("after leaving: %v, want assigned 1, revoked 1", got)
	}
}
