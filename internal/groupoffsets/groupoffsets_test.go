package groupoffsets_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/groupoffsets"
	"github.com/atrelay/atrelay/internal/testkafka"
)

// logs is the topic every test resets, as setup builds it: three
// partitions whose records are an hour apart, the last one half an hour
// ago; partition 1's log starts at 4 (records deleted), partition 2 is
// shorter.
//
//	partition  start  end  committed (commit())
//	0          0      10   5
//	1          4      10   6
//	2          0      6    2
//
// Record i of every partition has the timestamp recordTime(i).
type logs struct {
	k            *testkafka.Cluster
	adm          *kadm.Client
	topic, group string
	now          time.Time
}

var (
	ends      = [3]int64{10, 10, 6}
	committed = [3]int64{5, 6, 2}
)

func setup(t *testing.T) *logs {
	t.Helper()
	k := testkafka.New(t)
	l := &logs{k: k, adm: k.Admin(t), topic: k.Name(t, "events"), group: k.Name(t, "group"), now: time.Now()}
	k.CreateTopic(t, l.topic, 3)
	var recs []*kgo.Record
	for p := range int32(3) {
		for i := range ends[p] {
			recs = append(recs, &kgo.Record{Topic: l.topic, Partition: p, Value: []byte("v"), Timestamp: l.recordTime(i)})
		}
	}
	k.Produce(t, recs...)
	del := kadm.Offsets{}
	del.Add(kadm.Offset{Topic: l.topic, Partition: 1, At: 4})
	resp, err := l.adm.DeleteRecords(context.Background(), del)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	return l
}

// recordTime is record i's timestamp: 9.5 h before now for record 0, then
// an hour later each.
func (l *logs) recordTime(i int64) time.Time {
	return l.now.Add(-time.Duration(10-i)*time.Hour + 30*time.Minute).Truncate(time.Millisecond)
}

// commit sets the group's committed offsets: the table's, or those given.
func (l *logs) commit(t *testing.T, at ...int64) {
	t.Helper()
	if at == nil {
		at = committed[:]
	}
	offs := kadm.Offsets{}
	for p, o := range at {
		offs.Add(kadm.Offset{Topic: l.topic, Partition: int32(p), At: o, LeaderEpoch: -1})
	}
	resp, err := l.adm.CommitOffsets(context.Background(), l.group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func (l *logs) committed(t *testing.T) [3]int64 {
	t.Helper()
	got := l.k.Committed(t, l.group, l.topic)
	return [3]int64{got[0], got[1], got[2]}
}

// join starts a member of the group consuming the topic and returns once
// it has its partitions.
func (l *logs) join(t *testing.T, clientID string) {
	t.Helper()
	assigned := make(chan struct{}, 1)
	member := l.k.Client(t, kgo.ConsumerGroup(l.group), kgo.ConsumeTopics(l.topic), kgo.ClientID(clientID), kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			member.PollFetches(ctx)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-assigned:
	case <-time.After(60 * time.Second):
		t.Fatal("member never joined")
	}
}

// TestStrategies is each reset strategy's arithmetic, on the table of
// setup: the targets Reset returns (with what was asked before clamping),
// and what the group has committed afterwards.
//
// Mutations caught: not clamping (Target = Requested) fails the shift
// rows below the start and past the end and the plan row; ByDuration
// adding the duration to now instead of subtracting it fails "by
// duration"; ignoring Only's partitions fails "partitions" and
// "partitions latest"; committing on a dry run fails "dry run". ("Time
// after every record" holds by kadm: ListOffsetsAfterMilli already answers
// the end offset there, so removing requested's own fallback for a -1
// changes nothing today.)
func TestStrategies(t *testing.T) {
	l := setup(t)
	only := func(s groupoffsets.Strategy, ps ...int32) groupoffsets.Strategy {
		s, err := s.Only(ps)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const u = -1 // unchanged: the committed offset stays
	tests := []struct {
		name      string
		strategy  groupoffsets.Strategy
		execute   bool
		want      [3]int64 // Target per partition
		requested [3]int64 // Requested, where it differs from want (0: same)
	}{
		{"earliest", groupoffsets.Earliest(), true, [3]int64{0, 4, 0}, [3]int64{}},
		{"latest", groupoffsets.Latest(), true, [3]int64{10, 10, 6}, [3]int64{}},
		{"dry run", groupoffsets.Latest(), false, [3]int64{10, 10, 6}, [3]int64{}},
		// Record 3 is the first at or after this time; on partition 1
		// the first left is 4.
		{"time", groupoffsets.At(l.recordTime(3).Add(-10 * time.Minute)), true, [3]int64{3, 4, 3}, [3]int64{}},
		{"time after every record", groupoffsets.At(l.now.Add(time.Hour)), true, [3]int64{10, 10, 6}, [3]int64{}},
		// now-3h: record 7 (2.5 h old) is the first after it; partition 2
		// has none (its last is 4.5 h old), so its end.
		{"by duration", groupoffsets.ByDuration(3 * time.Hour), true, [3]int64{7, 7, 6}, [3]int64{}},
		{"shift forward", groupoffsets.ShiftBy(2), true, [3]int64{7, 8, 4}, [3]int64{}},
		{"shift back below the start", groupoffsets.ShiftBy(-3), true, [3]int64{2, 4, 0}, [3]int64{0, 3, -1}},
		{"shift past the end", groupoffsets.ShiftBy(100), true, [3]int64{10, 10, 6}, [3]int64{105, 106, 102}},
		{"partitions", only(groupoffsets.ShiftBy(-2), 0, 2), true, [3]int64{3, u, 0}, [3]int64{}},
		{"partitions latest", only(groupoffsets.Latest(), 1), true, [3]int64{u, 10, u}, [3]int64{}},
		{"explicit pairs", groupoffsets.Offsets(map[int32]int64{0: 1, 2: 5}), true, [3]int64{1, u, 5}, [3]int64{}},
		{"plan, clamped", groupoffsets.FromPlan(groupoffsets.Plan{Offsets: []groupoffsets.PlanOffset{
			{Topic: l.topic, Partition: 0, Offset: 2}, {Topic: l.topic, Partition: 1, Offset: 1}, {Topic: l.topic, Partition: 2, Offset: 99}}}),
			true, [3]int64{2, 4, 6}, [3]int64{0, 1, 99}},
		{"plan for several groups", groupoffsets.FromPlan(groupoffsets.Plan{Offsets: []groupoffsets.PlanOffset{
			{Group: "other", Topic: "elsewhere", Partition: 0, Offset: 9}, {Group: l.group, Topic: l.topic, Partition: 1, Offset: 7}}}),
			true, [3]int64{u, 7, u}, [3]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.commit(t)
			rows, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, tt.strategy, tt.execute)
			if err != nil {
				t.Fatal(err)
			}
			var got, requested [3]int64
			for _, r := range rows {
				got[r.Partition], requested[r.Partition] = r.Target, r.Requested
			}
			wantRequested := tt.want
			for p, r := range tt.requested {
				if r != 0 {
					wantRequested[p] = r
				}
			}
			if got != tt.want || requested != wantRequested {
				t.Fatalf("targets %v (requested %v), want %v (requested %v)", got, requested, tt.want, wantRequested)
			}
			wantCommitted := committed
			for p, w := range tt.want {
				if w != u && tt.execute {
					wantCommitted[p] = w
				}
			}
			if c := l.committed(t); c != wantCommitted {
				t.Fatalf("committed %v, want %v", c, wantCommitted)
			}
		})
	}
}

// TestStrategyErrors: what Reset refuses, committing nothing.
//
// Mutations caught: shifting from -1 when nothing is committed (as
// committed+n) fails "shift with nothing committed"; clamping typed pairs
// like a plan fails "pair past the end".
func TestStrategyErrors(t *testing.T) {
	l := setup(t)
	plan := func(group, topic string, p int32) groupoffsets.Strategy {
		return groupoffsets.FromPlan(groupoffsets.Plan{Group: group, Offsets: []groupoffsets.PlanOffset{{Topic: topic, Partition: p, Offset: 1}}})
	}
	only, _ := groupoffsets.Earliest().Only([]int32{7})
	tests := []struct {
		name     string
		commit   []int64
		strategy groupoffsets.Strategy
		want     string
	}{
		{"shift with nothing committed", []int64{5, 6}, groupoffsets.ShiftBy(1), "partition 2: the group has no committed offset to shift"},
		{"pair past the end", nil, groupoffsets.Offsets(map[int32]int64{0: 11}), "offset 11 of partition 0 is outside its log [0, 10]"},
		{"pair below the start", nil, groupoffsets.Offsets(map[int32]int64{1: 3}), "offset 3 of partition 1 is outside its log [4, 10]"},
		{"pair on no partition", nil, groupoffsets.Offsets(map[int32]int64{5: 1}), "the topic has no partition 5"},
		{"partitions that do not exist", nil, only, "the topic has no partition 7"},
		{"plan for another topic", nil, plan("", "elsewhere", 0), "the plan moves topic elsewhere"},
		{"plan for another group", nil, plan("other", l.topic, 0), "the plan is for group other"},
		{"plan on no partition", nil, plan("", l.topic, 3), "the plan names partition 3"},
		{"no strategy", nil, groupoffsets.Strategy{}, "no reset strategy"},
		{"by a negative duration", nil, groupoffsets.ByDuration(-time.Hour), "want a positive duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.group = l.k.Name(t, "group")
			l.commit(t, tt.commit...)
			before := l.committed(t)
			_, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, tt.strategy, true)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if after := l.committed(t); after != before {
				t.Fatalf("committed %v, was %v", after, before)
			}
		})
	}
	if _, err := groupoffsets.Offsets(map[int32]int64{0: 1}).Only([]int32{0}); err == nil {
		t.Error("Only accepted explicit pairs")
	}
	if _, err := groupoffsets.FromPlan(groupoffsets.Plan{}).Only([]int32{0}); err == nil {
		t.Error("Only accepted a plan")
	}
}

// TestResetRefusedWhileMembers: while a member runs, every strategy is
// refused, dry run or not, and so is Commit; nothing is committed.
//
// Mutations caught: dropping the member check in Reset lets every dry
// run succeed; dropping Commit's fails its check with the broker's own
// refusal (UNKNOWN_MEMBER_ID: Kafka and kfake refuse an admin commit to a
// group with members) instead of ErrGroupActive, which says what to do.
func TestResetRefusedWhileMembers(t *testing.T) {
	l := setup(t)
	l.commit(t)
	l.join(t, "refused")
	for _, s := range []groupoffsets.Strategy{groupoffsets.Earliest(), groupoffsets.Latest(), groupoffsets.At(l.now),
		groupoffsets.ByDuration(time.Hour), groupoffsets.ShiftBy(-1), groupoffsets.Offsets(map[int32]int64{0: 1}),
		groupoffsets.FromPlan(groupoffsets.Plan{Offsets: []groupoffsets.PlanOffset{{Topic: l.topic, Partition: 0, Offset: 1}}})} {
		for _, execute := range []bool{false, true} {
			_, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, s, execute)
			if !errors.Is(err, groupoffsets.ErrGroupActive) || !strings.Contains(err.Error(), "1 members") {
				t.Errorf("%s (execute %v) with a member: err = %v", s, execute, err)
			}
		}
	}
	err := groupoffsets.Commit(context.Background(), l.adm, l.group, l.topic, []groupoffsets.Row{{Partition: 0, Target: 1}})
	if !errors.Is(err, groupoffsets.ErrGroupActive) {
		t.Errorf("Commit with a member: err = %v", err)
	}
	// The member may have committed nothing: it has read nothing new.
	if c := l.committed(t); c != committed {
		t.Fatalf("committed %v, want %v", c, committed)
	}
}

// TestShowJSON: `offsets show --output json` names, per partition, the
// committed offset (null when none), the log, the lag, and the member
// owning it, with its client id and host; without members those are null.
//
// Mutations caught: Show not reading the members' assignments (owners left
// empty) fails every member_id and host check (the text table is checked
// for the host too); Show failing on kfake's GROUP_ID_NOT_FOUND for a
// group that never committed (as it did) fails "a new group".
func TestShowJSON(t *testing.T) {
	l := setup(t)
	// A group that never committed (kfake answers GROUP_ID_NOT_FOUND,
	// Kafka an empty list): nothing committed, all of the log to consume.
	if st, err := groupoffsets.Show(context.Background(), l.adm, l.group, l.topic); err != nil || st.TotalLag() != 10+6+6 || st.Rows[0].Committed != -1 || st.State != "Dead" && st.State != "Empty" {
		t.Fatalf("a new group: %+v, %v", st, err)
	}
	l.commit(t, 5, 6) // nothing on partition 2
	decode := func() map[string]any {
		t.Helper()
		st, err := groupoffsets.Show(context.Background(), l.adm, l.group, l.topic)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := st.WriteJSON(&b); err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		if err := json.Unmarshal(b.Bytes(), &out); err != nil {
			t.Fatalf("%v:\n%s", err, b.String())
		}
		return out
	}
	part := func(out map[string]any, p int) map[string]any {
		return out["partitions"].([]any)[p].(map[string]any)
	}

	out := decode()
	if out["group"] != l.group || out["topic"] != l.topic || out["members"] != 0.0 || out["total_lag"] != 5.0+4+6 {
		t.Fatalf("without members: %v", out)
	}
	p0, p2 := part(out, 0), part(out, 2)
	if p0["committed"] != 5.0 || p0["start"] != 0.0 || p0["end"] != 10.0 || p0["lag"] != 5.0 || p0["member_id"] != nil || p0["host"] != nil {
		t.Errorf("partition 0: %v", p0)
	}
	if p2["committed"] != nil || p2["lag"] != 6.0 {
		t.Errorf("partition 2 (nothing committed): %v", p2)
	}

	l.join(t, "show-json")
	out = decode()
	if out["members"] != 1.0 || out["state"] != "Stable" {
		t.Fatalf("with a member: %v", out)
	}
	for p := range 3 {
		pp := part(out, p)
		id, _ := pp["member_id"].(string)
		host, _ := pp["host"].(string)
		if id == "" || host == "" || pp["client_id"] != "show-json" {
			t.Errorf("partition %d: member_id %q, host %q, client_id %v", p, id, host, pp["client_id"])
		}
	}
	st, err := groupoffsets.Show(context.Background(), l.adm, l.group, l.topic)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	st.WriteText(&text)
	if !strings.Contains(text.String(), st.Rows[0].Member.Host+" ") || !strings.Contains(text.String(), "total lag 15") {
		t.Errorf("table:\n%s", text.String())
	}
}
