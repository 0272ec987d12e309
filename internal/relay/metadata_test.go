package relay_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/internal/relay/offsets"
	"github.com/atrelay/atrelay/internal/testkafka"
	"github.com/atrelay/atrelay/pipeline"
)

// commitWithMetadata commits offset at of partition 0 for group, with md
// as the commit's metadata, as another tool (or an earlier atrelay) would.
func commitWithMetadata(t *testing.T, k *testkafka.Cluster, group, topic string, at int64, md string) {
	t.Helper()
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: at, LeaderEpoch: -1, Metadata: md})
	if err := k.Admin(t).CommitAllOffsets(waitCtx(t), group, offs); err != nil {
		t.Fatal(err)
	}
}

// TestCommitMetadataOnAssignment: a group whose committed offset 5 carries
// metadata. atrelay's own (records 6 and 7 settled above it) makes the new
// owner settle 6 and 7 at once, as already_settled, without sending them;
// another tool's, or malformed atrelay metadata, is ignored with a DEBUG
// line: every record from 5 is sent, nothing is dead-lettered, no error.
// Mutations caught: restoreSettled ignoring every metadata (the "atrelay's"
// case sends 6 and 7); DecodeMetadata without the prefix check (the
// "another tool's" case: "kgo-…" is malformed, logged as such, not as
// another tool's).
func TestCommitMetadataOnAssignment(t *testing.T) {
	tests := []struct {
		name    string
		md      string
		skipped []int  // settled as already_settled, never sent
		log     string // the line that says what became of the metadata
	}{
		{"atrelay's", "atrelay1:1+2", []int{6, 7}, `level=INFO msg="records above the committed offset were settled by the partition's previous owner`},
		{"another tool's", "kgo-6f2c-member", nil, `level=DEBUG msg="commit metadata not written by atrelay`},
		{"empty", "", nil, `level=DEBUG msg="commit metadata not written by atrelay`},
		{"malformed atrelay metadata", "atrelay1:1+zz", nil, `level=DEBUG msg="malformed commit metadata`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStubTopic(t, 1)
			s.produce(t, 1, 0, 10)
			commitWithMetadata(t, s.k, s.group, s.topic, 5, tt.md)
			var logs lockedBuffer
			m := newCounter()
			sink := &scriptedSink{}
			stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{sink: sink, metrics: m,
				logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}))
			s.waitCommitted(t, m, map[int32]int64{0: 10})
			stop()
			for i := range 10 {
				want := 1
				if i < 5 || slices.Contains(tt.skipped, i) {
					want = 0
				}
				if n := sink.count(value(0, i)); n != want {
					t.Errorf("%s sent %d times, want %d", value(0, i), n, want)
				}
			}
			if got := m.get(pipeline.Filtered.String(), "already_settled"); got != int64(len(tt.skipped)) {
				t.Errorf("%d records settled as already_settled, want %d", got, len(tt.skipped))
			}
			out := logs.String()
			if !strings.Contains(out, tt.log) {
				t.Errorf("no line %s:\n%s", tt.log, out)
			}
			for line := range strings.Lines(out) {
				if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") && strings.Contains(line, "metadata") {
					t.Errorf("metadata logged above DEBUG: %s", line)
				}
			}
			if d := m.sum(pipeline.Rejected.String()); d != 0 {
				t.Errorf("%d records dead-lettered", d)
			}
		})
	}
}

// commitOrder is the tests' counter that also records whether a commit
// was accepted after one was refused.
type commitOrder struct {
	*counter
	mu                  sync.Mutex
	refused, okAfterRef bool
}

func (c *commitOrder) Commit(ctx context.Context, ok bool) {
	c.mu.Lock()
	if !ok {
		c.refused = true
	} else if c.refused {
		c.okAfterRef = true
	}
	c.mu.Unlock()
	c.counter.Commit(ctx, ok)
}

func (c *commitOrder) acceptedAfterRefusal() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.okAfterRef
}

// TestCommitMetadataTooLarge: brokers whose offset.metadata.max.bytes is
// below the metadata budget refuse the commit (OFFSET_METADATA_TOO_LARGE);
// here kfake refuses any metadata above 100 bytes, while one site is down
// and 360 records above the committed offset settle (their metadata takes
// about 150 bytes). The relay says so in a WARN and commits again with
// half the budget until the brokers accept: the accepted metadata holds the
// low end of the settled set, and the committed offset never waits on the
// metadata.
// Mutation caught: cutMetadata not halving the budget (every later commit
// is refused: time-out).
func TestCommitMetadataTooLarge(t *testing.T) {
	const n, limit = 400, 100
	s := newStubTopic(t, 1)
	s.k.RequireFake(t)
	s.produce(t, 1, 0, n)
	refuse := s.k.Fake().Fault(kfake.Fault{
		Keys: []kmsg.Key{kmsg.OffsetCommit}, Group: s.group, Err: kerr.OffsetMetadataTooLarge, Count: -1,
		When: func(req kmsg.Request) bool {
			for _, t := range req.(*kmsg.OffsetCommitRequest).Topics {
				for _, p := range t.Partitions {
					if p.Metadata != nil && len(*p.Metadata) > limit {
						return true
					}
				}
			}
			return false
		},
	})
	down := &pipeline.Site{Integration: "down", ID: 503, Endpoint: "http://127.0.0.1/down"}
	good := &pipeline.Site{Integration: "good", ID: 1, Endpoint: "http://127.0.0.1/event"}
	var logs lockedBuffer
	m := &commitOrder{counter: newCounter()}
	stop := runRelay(t, newStubRelay(t, s.k, s.topic, s.group, stub{stages: oneInTen(down, good), sink: newDownSink(down), metrics: m, shutdown: 100 * time.Millisecond,
		logger: slog.New(slog.NewTextHandler(&logs, nil))}))
	ctx := waitCtx(t)
	for !m.acceptedAfterRefusal() {
		select {
		case <-m.commits:
		case <-ctx.Done():
			t.Fatalf("no commit accepted after %d refused", refuse.Hits())
		}
	}
	// Accepted after a refusal: cut to what the brokers take.
	o := committedWithMetadata(t, s.k, s.group, s.topic)
	stop()
	held, err := offsets.DecodeMetadata(o.At, o.Metadata)
	if err != nil || o.At != 0 || len(o.Metadata) > limit || held.Count() == 0 || held.Count() >= n*9/10 {
		t.Fatalf("accepted commit at %d with metadata %q (%d bytes, %v): want 0 with a cut, non-empty settled set", o.At, o.Metadata, len(o.Metadata), err)
	}
	// The low end: every healthy record below the highest one held.
	highest := 0
	for i := range n {
		if held.Contains(int64(i)) {
			highest = i
		}
	}
	for i := range highest {
		if isGood(i) != held.Contains(int64(i)) {
			t.Errorf("record %d: held %v, healthy %v", i, held.Contains(int64(i)), isGood(i))
		}
	}
	if !strings.Contains(logs.String(), "the brokers refuse the commit metadata as too large") {
		t.Errorf("no WARN about the refused metadata:\n%s", logs.String())
	}
	t.Logf("%d commits refused; the accepted metadata (%d bytes) holds %d records, up to offset %d", refuse.Hits(), len(o.Metadata), held.Count(), highest)
}
