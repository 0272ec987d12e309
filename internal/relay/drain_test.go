package relay_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// drainWarning is the relay's WARN when a revoke's drain ends with records
// of a revoked partition still unsettled.
const drainWarning = "revoke: in-flight records did not settle in time"

// unsettled is one drainWarning as logged.
type unsettled struct {
	partition int32
	pending   int64
	drain     string
}

// drainLog is a slog.Handler that passes every drainWarning to warnings
// (the first few; later ones are dropped, the test reads one).
type drainLog struct{ warnings chan unsettled }

func (d drainLog) Enabled(context.Context, slog.Level) bool { return true }
func (d drainLog) WithAttrs([]slog.Attr) slog.Handler       { return d }
func (d drainLog) WithGroup(string) slog.Handler            { return d }
func (d drainLog) Handle(_ context.Context, r slog.Record) error {
	if r.Level != slog.LevelWarn || !strings.HasPrefix(r.Message, drainWarning) {
		return nil
	}
	var w unsettled
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "partition":
			w.partition = int32(a.Value.Int64())
		case "pending":
			w.pending = a.Value.Int64()
		case "drain":
			w.drain = a.Value.String()
		}
		return true
	})
	select {
	case d.warnings <- w:
	default:
	}
	return nil
}

// TestRevokeDrainBound checks which bound the revoke drain uses:
// min(delivery.shutdown_timeout, kafka.rebalance_timeout/2), with the
// rebalance timeout read back from the member's own Kafka client. The
// collector holds every request; a second member joins, so the first one's
// revoke meets in-flight records that cannot settle. The drain's WARN must
// name the bound it used (an attribute, not a measured duration: no timing
// threshold), the records it gave up are counted abandoned{revoked}, and the
// new owner delivers them once the collector answers (every event
// delivered, the end offsets committed, member-b sent events of the
// partition the WARN named).
// Mutations caught (each run, each failed, each reverted):
//   - revoked() reading 0 for the rebalance timeout (`rebalance :=
//     time.Duration(0)`): drain="0s" in both cases;
//   - revoked() ignoring shutdown_timeout (`drain := rebalance/2`):
//     "shutdown bounds" logs drain="5s", want "1s";
//   - kafkaconn.Options not passing kafka.rebalance_timeout to the client
//     (kgo's 60s is read back): "rebalance bounds" logs drain="30s".
func TestRevokeDrainBound(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rebalance time.Duration // kafka.rebalance_timeout
		shutdown  time.Duration // delivery.shutdown_timeout
		want      string        // the drain the WARN names
	}{
		{name: "rebalance bounds", rebalance: 4 * time.Second, shutdown: time.Minute, want: "2s"},
		{name: "shutdown bounds", rebalance: 10 * time.Second, shutdown: time.Second, want: "1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 6)
			e.produce(fixture.Generate(fixture.Options{Seed: 131, Events: 3000, EventsPerVisitor: 2}), 0)
			cfg := e.config(1000, tc.shutdown)
			cfg.Kafka.RebalanceTimeout = tc.rebalance
			// The first member learns of the second's join from a
			// heartbeat; a short interval keeps that well inside the
			// short rebalance timeout, so the member is revoked, not
			// dropped from the group.
			cfg.Kafka.HeartbeatInterval = 250 * time.Millisecond
			opts, report := e.watchCommits()
			requests := e.recordRequests()
			ctx := waitCtx(t)

			log := drainLog{warnings: make(chan unsettled, 1)}
			a := opts
			a.Logger = slog.New(log)
			a.SinkHooks = func(c *atinternet.Config) { c.UserAgent = "atrelay/member-a" }
			e.start(cfg, a)
			if err := e.collector.WaitHits(ctx, e.wantDelivered()/10); err != nil {
				t.Fatal(err)
			}
			release := e.collector.Hold()
			t.Cleanup(release)
			b := opts
			b.SinkHooks = func(c *atinternet.Config) { c.UserAgent = "atrelay/member-b" }
			e.start(cfg, b)

			var w unsettled
			select {
			case w = <-log.warnings:
			case <-ctx.Done():
				t.Fatal("the first member's revoke never gave up on in-flight records")
			}
			if w.drain != tc.want || w.pending == 0 {
				t.Errorf("revoke drain WARN: drain=%q pending=%d, want drain=%q (rebalance_timeout %s, shutdown_timeout %s) and records pending",
					w.drain, w.pending, tc.want, tc.rebalance, tc.shutdown)
			}
			release()
			e.finish(ctx, report)
			if e.metrics.get("abandoned", "revoked") == 0 {
				t.Error("the revoke's drain gave up on records, but none was counted abandoned{revoked}")
			}
			if n := e.sentOf(requests(), "atrelay/member-b", w.partition); n == 0 {
				t.Errorf("member-b sent no event of partition %d, whose records member-a gave up at the revoke", w.partition)
			}
		})
	}
}

// sentOf returns how many events of partition p member ua sent.
func (e *env) sentOf(reqs []stamped, ua string, p int32) int {
	e.t.Helper()
	n := 0
	for _, r := range reqs {
		if r.UserAgent != ua {
			continue
		}
		for _, id := range eventIDs(e.t, r.Body) {
			if e.byEvent[id].partition == p {
				n++
			}
		}
	}
	return n
}
