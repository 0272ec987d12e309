package app_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestReadinessFollowsBroker is the operability issue's readiness on Apache
// Kafka, through Serve: the broker stops mid-run; /readyz turns 503 within
// ready_timeout, the log says the Kafka connection failed, naming the seed
// broker, and the lag series stay on /metrics, with their topic and group.
// The broker starts again: /readyz returns to 200, the recovery is logged,
// and every event is delivered and committed.
// Mutations caught (on the broker): the relay without its kafkaHooks
// (tried: /readyz never 200, "no successful fetch or heartbeat yet");
// lost() dropping its partitions' lag (tried: the series gone during the
// outage).
func TestReadinessFollowsBroker(t *testing.T) {
	ctl := os.Getenv("ATRELAY_KAFKA_CTL")
	if ctl == "" {
		t.Skip("needs a real broker it can stop and start (ATRELAY_KAFKA_CTL, set by deploy/kafka/with-broker.sh)")
	}
	w := newWorld(t, 2, 2000)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg := w.config(5 * time.Second)
	r := serve(t, cfg)
	health, metrics := "http://"+r.addr(t, "health")+"/readyz", "http://"+r.addr(t, "metrics")+"/metrics"
	broker := func(step string) {
		if out, err := exec.CommandContext(ctx, "bash", ctl, step).CombinedOutput(); err != nil {
			t.Fatalf("broker %s: %v\n%s", step, err, out)
		}
	}
	lagSeries := func() int {
		return strings.Count(get(t, metrics), fmt.Sprintf(`atrelay_consumer_lag{group=%q,partition=`, w.group))
	}

	if code, body := waitStatus(t, health, http.StatusOK, 60*time.Second); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q once running, want 200", code, body)
	}
	if err := w.collector.WaitHits(ctx, len(w.events)/4); err != nil {
		t.Fatal(err)
	}
	if !eventually(30*time.Second, func() bool { return lagSeries() == 2 }) {
		t.Fatalf("%d lag series while running, want 2 (one per partition)", lagSeries())
	}

	broker("stop")
	stopped := time.Now()
	code, body := waitStatus(t, health, http.StatusServiceUnavailable, cfg.Telemetry.ReadyTimeout)
	t.Logf("broker stopped: /readyz %d after %s: %s", code, time.Since(stopped).Round(100*time.Millisecond), strings.TrimSpace(body))
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d %q, want 503 within ready_timeout %s of the broker's stop", code, body, cfg.Telemetry.ReadyTimeout)
	}
	seed := w.kafka.Brokers()[0]
	logCtx, cancelLog := context.WithDeadline(ctx, stopped.Add(cfg.Telemetry.ReadyTimeout))
	defer cancelLog()
	l, err := r.logs.wait(logCtx, func(l logLine) bool {
		return l.msg == "kafka connection failed" && strings.Contains(l.attrs["seeds"], seed)
	})
	if err != nil {
		t.Errorf("no \"kafka connection failed\" line naming the seed %s within ready_timeout: %v\n%s", seed, err, r.logs)
	} else {
		t.Logf("logged: %s %v", l.msg, l.attrs)
	}
	if n := lagSeries(); n != 2 {
		t.Errorf("%d lag series while the broker is down, want both partitions' at their last value", n)
	}

	broker("start")
	started := time.Now()
	if code, body := waitStatus(t, health, http.StatusOK, 90*time.Second); code != http.StatusOK {
		t.Fatalf("/readyz = %d %q after the broker came back, want 200", code, body)
	}
	t.Logf("broker started: /readyz 200 after %s", time.Since(started).Round(100*time.Millisecond))
	w.waitDelivered(ctx)
	// What it delivered before the outage and could not commit then, it
	// fetches again, recognises and commits now.
	ends := fmt.Sprint(w.kafka.EndOffsets(t, w.topic))
	if !eventually(60*time.Second, func() bool { return fmt.Sprint(w.kafka.Committed(t, w.group, w.topic)) == ends }) {
		t.Errorf("committed %v, want the end offsets %s\n%s", w.kafka.Committed(t, w.group, w.topic), ends, r.logs)
	}
	for _, msg := range []string{"kafka connection recovered", "consumer group session recovered"} {
		if !r.logs.has(msg) {
			t.Errorf("no %q line\n%s", msg, r.logs)
		}
	}
	r.stop(t, cfg.Delivery.Relay.ShutdownTimeout+closeGraceBound)
}
