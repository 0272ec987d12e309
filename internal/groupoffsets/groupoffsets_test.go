package groupoffsets_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/groupoffsets"
	"github.com/atrelay/atrelay/internal/testkafka"
)

func TestShowAndReset(t *testing.T) {
	k := testkafka.New(t)
	topic, group := k.Name(t, "events"), k.Name(t, "group")
	k.CreateTopic(t, topic, 2)
	t0 := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	var recs []*kgo.Record
	for p := range int32(2) {
		for i := range 10 {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte("v"), Timestamp: t0.Add(time.Duration(i) * time.Hour)})
		}
	}
	k.Produce(t, recs...)
	adm := k.Admin(t)
	ctx := context.Background()
	commit := func(at int64) {
		offs := kadm.Offsets{}
		offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: at, LeaderEpoch: -1})
		offs.Add(kadm.Offset{Topic: topic, Partition: 1, At: at, LeaderEpoch: -1})
		if resp, err := adm.CommitOffsets(ctx, group, offs); err != nil || resp.Error() != nil {
			t.Fatalf("commit: %v %v", err, resp.Error())
		}
	}
	commit(8)

	rows, err := groupoffsets.Show(ctx, adm, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Committed != 8 || rows[0].End != 10 || rows[0].Lag() != 2 {
		t.Fatalf("Show = %+v", rows)
	}
	var out bytes.Buffer
	groupoffsets.Print(&out, rows, false)
	if !strings.Contains(out.String(), "total lag 4") {
		t.Fatalf("table:\n%s", out.String())
	}

	tests := []struct {
		name    string
		to      string
		execute bool
		want    [2]int64 // committed afterwards
	}{
		{"dry run changes nothing", "earliest", false, [2]int64{8, 8}},
		{"earliest", "earliest", true, [2]int64{0, 0}},
		{"latest", "latest", true, [2]int64{10, 10}},
		{"a time", t0.Add(3*time.Hour + 30*time.Minute).Format(time.RFC3339), true, [2]int64{4, 4}},
		{"explicit pairs", "0:2,1:7", true, [2]int64{2, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			commit(8)
			if _, err := groupoffsets.Reset(ctx, adm, group, topic, tt.to, tt.execute); err != nil {
				t.Fatal(err)
			}
			got := k.Committed(t, group, topic)
			if got[0] != tt.want[0] || got[1] != tt.want[1] {
				t.Fatalf("committed %v, want %v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"yesterday", "0:99", "5:1", "0:x"} {
		if _, err := groupoffsets.Reset(ctx, adm, group, topic, bad, false); err == nil {
			t.Errorf("--to %s accepted", bad)
		}
	}

	// A running member makes reset refuse.
	assigned := make(chan struct{}, 1)
	member := k.Client(t, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}))
	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go member.PollFetches(pollCtx)
	select {
	case <-assigned:
	case <-time.After(60 * time.Second):
		t.Fatal("member never joined")
	}
	_, err = groupoffsets.Reset(ctx, adm, group, topic, "earliest", true)
	if !errors.Is(err, groupoffsets.ErrGroupActive) {
		t.Fatalf("reset with a member: err = %v", err)
	}
}
