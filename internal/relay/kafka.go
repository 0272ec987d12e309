package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/atrelay/atrelay/internal/failurelog"
)

// kafkaHooks watch the consumer client's traffic with the brokers. A
// connection or request that fails is a Kafka failure, logged through
// kafkaLog (the first at once, naming the seed brokers, then summaries, then
// the recovery); a successful fetch or group request is contact, which
// readiness reads (LastContact); a heartbeat answered is a group session,
// which watchGroup reads.
type kafkaHooks struct{ r *Relay }

var (
	_ kgo.HookBrokerConnect = kafkaHooks{}
	_ kgo.HookBrokerE2E     = kafkaHooks{}
)

// OnBrokerConnect sees every dial, and reports those that failed.
func (h kafkaHooks) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil && !closing(err) {
		h.r.kafkaLog.Failed(err, "broker", brokerAddr(meta))
	}
}

// OnBrokerE2E sees every request: one that failed on the wire is a
// failure; one answered is a success, and contact when it is a fetch or a
// group request.
func (h kafkaHooks) OnBrokerE2E(meta kgo.BrokerMetadata, key int16, e2e kgo.BrokerE2E) {
	if err := e2e.Err(); err != nil {
		if !closing(err) {
			h.r.kafkaLog.Failed(err, "broker", brokerAddr(meta), "request", kmsg.NameForKey(key))
		}
		return
	}
	h.r.kafkaLog.Succeeded()
	switch k := kmsg.Key(key); k {
	case kmsg.Heartbeat, kmsg.ConsumerGroupHeartbeat:
		now := time.Now().UnixNano()
		h.r.lastHeartbeat.Store(now)
		h.r.lastContact.Store(now)
		// The coordinator answers: the session is back, if it was lost.
		h.r.groupLog.Succeeded()
	case kmsg.Fetch, kmsg.JoinGroup, kmsg.SyncGroup:
		h.r.lastContact.Store(time.Now().UnixNano())
	}
}

// groupWarnAfter is how long the member may go without a group session (no
// heartbeat answered) before it says so. franz-go retries a coordinator
// that is not available, and a join waits for the group's rebalance, for
// tens of seconds without an error.
const groupWarnAfter = 10 * time.Second

// watchGroup reports through groupLog, until ctx ends, a member that has
// had no heartbeat answered for groupWarnAfter: it cannot find or reach its
// coordinator, or its join waits for the group (a member that died without
// leaving holds a rebalance until its session expires). It reports again
// every groupWarnAfter while that lasts; the next heartbeat answered, or
// assignment, reports the recovery.
func (r *Relay) watchGroup(ctx context.Context) {
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var reported time.Time
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-tick.C:
		}
		last := max(start.UnixNano(), r.lastHeartbeat.Load())
		silent := now.Sub(time.Unix(0, last))
		if silent >= groupWarnAfter && now.Sub(reported) >= groupWarnAfter {
			reported = now
			r.groupLog.Failed(fmt.Errorf("no group session for %s: joining or rebalancing (the coordinator is not available or not reachable, or the group waits for a member)",
				silent.Round(time.Second)))
		}
	}
}

// closing reports whether err is the client closing or a request it
// cancelled itself (a fetch at a rebalance), not a Kafka failure.
func closing(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed)
}

func brokerAddr(meta kgo.BrokerMetadata) string {
	return net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
}

// LastContact returns when the member last had a successful fetch or group
// request (join, sync, heartbeat) with the brokers; the zero time before
// any. A member in a group has one every few seconds (heartbeats), so an
// old LastContact means Kafka is unreachable or not answering.
func (r *Relay) LastContact() time.Time {
	if n := r.lastContact.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// seedBrokers returns the seed brokers opts name, as the client resolves
// them (a missing port becomes 9092). A client that is never used connects
// nothing.
func seedBrokers(opts []kgo.Opt) []string {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil
	}
	defer cl.Close()
	seeds, _ := cl.OptValue(kgo.SeedBrokers).([]string)
	return seeds
}

// kafkaLogger is the Kafka client's logger: log's records with
// component=kafka, from WARN up, each message at most once per
// failurelog.DefaultPeriod (franz-go logs every failed dial, twice a second
// while a broker is down; our own kafka connection lines summarise those).
// franz-go's INFO lines (every join, sync and metadata refresh), and every
// repeat, pass only when log is at DEBUG.
func kafkaLogger(log *slog.Logger) *kslog.Logger {
	h := log.With("component", "kafka").Handler()
	if !h.Enabled(context.Background(), slog.LevelDebug) {
		h = failurelog.Throttle(minLevel{Handler: h, min: slog.LevelWarn}, failurelog.DefaultPeriod)
	}
	return kslog.New(slog.New(h))
}

// minLevel drops the records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(attrs), m.min}
}

func (m minLevel) WithGroup(name string) slog.Handler {
	return minLevel{m.Handler.WithGroup(name), m.min}
}
