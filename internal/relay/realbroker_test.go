package relay_test

import (
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/fixture"
)

// TestBrokerRestart stops the broker process in the middle of a run and
// starts it again: the service recovers by itself and nothing is lost. It
// needs the broker control of deploy/kafka/with-broker.sh.
func TestBrokerRestart(t *testing.T) {
	ctl := os.Getenv("ATRELAY_KAFKA_CTL")
	if ctl == "" {
		t.Skip("needs a real broker it can stop and start (ATRELAY_KAFKA_CTL, set by deploy/kafka/with-broker.sh)")
	}
	e := newEnv(t, 3)
	e.produce(fixture.Generate(fixture.Options{Seed: 8, Events: 3000, EventsPerVisitor: 3}), 0)
	opts, report := e.watchCommits()
	ctx := waitCtx(t)
	e.start(e.config(300, 10*time.Second), opts)
	want := e.wantDelivered()
	if err := e.collector.WaitHits(ctx, want/4); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"stop", "start"} {
		if out, err := exec.CommandContext(ctx, "bash", ctl, step).CombinedOutput(); err != nil {
			t.Fatalf("broker %s: %v\n%s", step, err, out)
		}
	}
	e.finish(ctx, report)
}

// TestThreeConsumers runs three members in one group, joining one after the
// other, and one leaving mid-stream: nothing is lost and no commit passes an
// unacknowledged record.
func TestThreeConsumers(t *testing.T) {
	e := newEnv(t, 6)
	e.produce(fixture.Generate(fixture.Options{Seed: 9, Events: 6000, EventsPerVisitor: 2}), 0)
	cfg := e.config(300, 3*time.Second)
	opts, report := e.watchCommits()
	ctx := waitCtx(t)
	want := e.wantDelivered()

	joined := func() (chan struct{}, func(bool)) {
		ch := make(chan struct{})
		var once sync.Once
		return ch, func(ready bool) {
			if ready {
				once.Do(func() { close(ch) })
			}
		}
	}
	e.start(cfg, opts)
	if err := e.collector.WaitHits(ctx, want/6); err != nil {
		t.Fatal(err)
	}
	var members []*service
	for range 2 {
		ch, onReady := joined()
		o := opts
		o.OnReady = onReady
		members = append(members, e.start(cfg, o))
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatal("a member never got partitions")
		}
	}
	if err := e.collector.WaitHits(ctx, want/2); err != nil {
		t.Fatal(err)
	}
	members[0].stop(t) // one member leaves mid-stream
	e.finish(ctx, report)
}
