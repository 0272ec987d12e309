package relay_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/app"
	"github.com/atrelay/atrelay/internal/dlqreplay"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/sinks/dlq"
)

// setMaxMessageBytes sets topic's max.message.bytes, so that it takes
// records larger than Kafka's default 1 MB.
func (e *env) setMaxMessageBytes(topic string, n int) {
	e.t.Helper()
	v := strconv.Itoa(n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resps, err := e.kafka.Admin(e.t).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &v}}, topic)
	if err == nil {
		for _, r := range resps {
			if r.Err != nil {
				err = r.Err
			}
		}
	}
	if err != nil {
		e.t.Fatalf("set max.message.bytes of %s: %v", topic, err)
	}
}

// TestTooLargeRecordDeadLettered (issue 15, point 2): a record value above
// codec.max_record_bytes (unset: 1 MiB) goes to the DLQ with reason
// too_large, stage decode, undecoded, through the service as app.Build
// assembles it; the events before and after it on the same partition are
// delivered, the group commits past it, and the drop is counted as dlq /
// too_large. The DLQ copy is whole when the DLQ topic takes it (2 MiB),
// and a pointer without the value when it does not (5 MB, the DLQ topic at
// Kafka's default limit): the pointer's reason is the writer's too_large,
// its original reason the decoder's. `atrelay dlq replay` replays the
// whole copy and skips the pointer.
//
// Mutations caught (each applied once, seen failing, reverted): the size
// check disabled in codec.DecodeInto (both large rows: the value is read
// as Avro and dead-lettered as corrupt, "N bytes after the record");
// codec.FromConfig not passing codec.max_record_bytes to New ("2 MiB,
// limit 3 MiB" is dead-lettered too_large under the default 1 MiB instead
// of being read, and failing, as the garbage it is); dlqreplay telling a
// pointer by its reason alone (the whole 2 MiB copy is skipped as one).
func TestTooLargeRecordDeadLettered(t *testing.T) {
	const topicLimit = 8 << 20
	tests := []struct {
		name     string
		size     int
		dlqLimit int // 0: the DLQ topic keeps Kafka's default
		maxBytes int // codec.max_record_bytes; 0: unset
		pointer  bool
		reason   string // the decoder's
	}{
		{"2 MiB, whole copy", 2 << 20, topicLimit, 0, false, "too_large"},
		{"5 MB, pointer", 5_000_000, 0, 0, true, "too_large"},
		// Below a configured 3 MiB limit, the same value is read, and
		// fails as the garbage it is.
		{"2 MiB, limit 3 MiB", 2 << 20, topicLimit, 3 << 20, false, "corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, 1)
			e.setMaxMessageBytes(e.topic, topicLimit)
			if tt.dlqLimit > 0 {
				e.setMaxMessageBytes(e.topic+".dlq", tt.dlqLimit)
			}
			events := fixture.Generate(fixture.Options{Seed: 15, Events: 40, EventsPerVisitor: 2})
			e.produce(events[:20], 0)
			// The large record: a Confluent-looking prefix (schema id 1)
			// then zeros, so that decoding it would at least ask the
			// registry and read Avro.
			big := make([]byte, tt.size)
			copy(big, []byte{0, 0, 0, 0, schemaID})
			rec := &kgo.Record{Topic: e.topic, Partition: 0, Key: []byte("big"), Value: big,
				Headers: []kgo.RecordHeader{{Key: "origin", Value: []byte("test")}}}
			prod := e.kafka.Client(t, kgo.ProducerBatchMaxBytes(topicLimit), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err := prod.ProduceSync(waitCtx(t), rec).FirstErr(); err != nil {
				t.Fatalf("produce %d bytes: %v", tt.size, err)
			}
			e.mu.Lock()
			e.records = append(e.records, record{partition: 0, offset: rec.Offset, want: expected{reason: "dlq"}})
			e.mu.Unlock()
			e.produce(events[20:], 0)

			cfg := e.config(200, 5*time.Second)
			if tt.maxBytes > 0 {
				cfg.Codec.MaxRecordBytes = &tt.maxBytes
			}
			opts, report := e.watchCommits()
			e.start(cfg, opts)
			got := e.kafka.ReadAll(t, e.topic+".dlq", 1)
			e.finish(waitCtx(t), report)

			if len(got) != 1 {
				t.Fatalf("%d DLQ records, want 1", len(got))
			}
			d := got[0]
			h := map[string]string{}
			for _, x := range d.Headers {
				h[x.Key] = string(x.Value)
			}
			if h[dlq.HeaderStage] != "decode" || h[dlq.HeaderOffset] != strconv.FormatInt(rec.Offset, 10) || string(d.Key) != "big" {
				t.Errorf("DLQ record key %q, headers %v: want the big record's, stage decode", d.Key, h)
			}
			if tt.reason == "too_large" && !strings.Contains(h[dlq.HeaderError], "codec.max_record_bytes") {
				t.Errorf("%s = %q, want it to name codec.max_record_bytes", dlq.HeaderError, h[dlq.HeaderError])
			}
			if tt.pointer {
				if h[dlq.HeaderReason] != dlq.ReasonTooLarge || h[dlq.HeaderOriginalReason] != tt.reason ||
					h[dlq.HeaderSize] != strconv.Itoa(tt.size) || len(d.Value) != 0 {
					t.Errorf("pointer: %d value bytes, headers %v: want no value, reason %s, original reason %s, size %d",
						len(d.Value), h, dlq.ReasonTooLarge, tt.reason, tt.size)
				}
			} else if h[dlq.HeaderReason] != tt.reason || !bytes.Equal(d.Value, big) {
				t.Errorf("whole copy: %d value bytes, reason %q: want the %d bytes, reason %s", len(d.Value), h[dlq.HeaderReason], tt.size, tt.reason)
			}
			if n := e.metrics.get(pipeline.Rejected.String(), tt.reason); n != 1 {
				t.Errorf("dlq/%s counted %d times, want 1", tt.reason, n)
			}

			// `atrelay dlq replay` replays the whole copy (once
			// max_record_bytes is raised, it decodes), and skips the
			// pointer, whose value is not kept.
			var out bytes.Buffer
			if err := app.Replay(waitCtx(t), cfg, dlqreplay.Options{Reasons: []string{tt.reason}}, &out); err != nil {
				t.Fatalf("dlq replay: %v\n%s", err, out.String())
			}
			want := "would replay  dlq 0:0  " + tt.reason
			if tt.pointer {
				want = "SKIPPED       dlq 0:0  too_large (was too_large): a pointer"
			}
			if !strings.Contains(out.String(), want) {
				t.Errorf("dlq replay output lacks %q:\n%s", want, out.String())
			}
		})
	}
}
