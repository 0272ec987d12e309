package dlqreplay_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/dlqreplay"
	"github.com/atrelay/atrelay/internal/testkafka"
)

// format is sinks/dlq's, written out: this layer may not import sinks.
// internal/app's TestReplayDeliversThroughTheRelay replays records that
// the real dead-letter writer wrote.
var format = dlqreplay.Format{
	SourceTopic: "atrelay.source.topic", SourcePartition: "atrelay.source.partition", SourceOffset: "atrelay.source.offset",
	Reason: "atrelay.reason", OriginalReason: "atrelay.original_reason", Prefix: "atrelay.", PointerReason: "too_large",
}

// dead is one dead-letter record of the fixture.
type dead struct {
	dlqPartition int32
	reason       string
	srcPartition int32
	srcOffset    int64
	key, value   []byte
	headers      []kgo.RecordHeader // the original record's
	old          bool               // written two days ago; else an hour ago
	pointer      string             // a pointer's original reason
}

// fixture is the dead-letter topic every test reads, in this order per
// dead-letter partition:
//
//	dlq 0:0  http_400   from events 1:7   key k1
//	dlq 0:1  corrupt    from events 0:3   key k2
//	dlq 0:2  too_large  from events 2:9   (a pointer; was http_400)
//	dlq 0:3  http_400   from events 1:8   key k4
//	dlq 1:0  http_400   from events 2:1   no key      (recent)
//	dlq 1:1  http_404   from events 0:4   key k6      (recent)
var fixture = []dead{
	{0, "http_400", 1, 7, []byte("k1"), []byte("v1"), []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-aa-bb-01")}, {Key: "x-app", Value: []byte("news")}}, true, ""},
	{0, "corrupt", 0, 3, []byte("k2"), []byte("bad"), nil, true, ""},
	{0, "too_large", 2, 9, []byte("k3"), nil, []kgo.RecordHeader{{Key: "x-app", Value: []byte("news")}}, true, "http_400"},
	{0, "http_400", 1, 8, []byte("k4"), []byte("v4"), nil, true, ""},
	{1, "http_400", 2, 1, nil, []byte("v5"), []kgo.RecordHeader{{Key: "h", Value: []byte("")}}, false, ""},
	{1, "http_404", 0, 4, []byte("k6"), []byte("v6"), nil, false, ""},
}

type env struct {
	k          *testkafka.Cluster
	src, dlq   string
	opts       []kgo.Opt
	now        time.Time
	sourceEnds map[int32]int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	k := testkafka.New(t)
	e := &env{k: k, src: k.Name(t, "events"), now: time.Now()}
	e.dlq = e.src + ".dlq"
	e.opts = []kgo.Opt{kgo.SeedBrokers(k.Brokers()...)}
	k.CreateTopic(t, e.src, 3)
	k.CreateTopic(t, e.dlq, 2)
	var recs []*kgo.Record
	for _, d := range fixture {
		hs := slices.Clone(d.headers)
		hs = append(hs,
			kgo.RecordHeader{Key: format.SourceTopic, Value: []byte(e.src)},
			kgo.RecordHeader{Key: format.SourcePartition, Value: []byte(strconv.Itoa(int(d.srcPartition)))},
			kgo.RecordHeader{Key: format.SourceOffset, Value: []byte(strconv.FormatInt(d.srcOffset, 10))},
			kgo.RecordHeader{Key: "atrelay.stage", Value: []byte("deliver")},
			kgo.RecordHeader{Key: format.Reason, Value: []byte(d.reason)},
			kgo.RecordHeader{Key: "atrelay.error", Value: []byte("boom")},
		)
		if d.pointer != "" {
			hs = append(hs, kgo.RecordHeader{Key: format.OriginalReason, Value: []byte(d.pointer)}, kgo.RecordHeader{Key: "atrelay.size", Value: []byte("9000000")})
		}
		ts := e.now.Add(-time.Hour)
		if d.old {
			ts = e.now.Add(-48 * time.Hour)
		}
		recs = append(recs, &kgo.Record{Topic: e.dlq, Partition: d.dlqPartition, Key: d.key, Value: d.value, Headers: hs, Timestamp: ts})
	}
	k.Produce(t, recs...)
	e.sourceEnds = k.EndOffsets(t, e.src)
	return e
}

func (e *env) run(t *testing.T, o dlqreplay.Options) *dlqreplay.Result {
	t.Helper()
	o.Topic, o.Format = e.dlq, format
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := dlqreplay.Run(ctx, e.opts, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// positions is "dlq p:o" of each entry, with "skip" for the skipped.
func positions(res *dlqreplay.Result) []string {
	var out []string
	for _, e := range res.Entries {
		s := fmt.Sprintf("%d:%d", e.Partition, e.Offset)
		if e.Skipped != "" {
			s += " skip"
		}
		out = append(out, s)
	}
	return out
}

// TestSelection: which dead-letter records a run selects, which it skips,
// and the counts by reason, dry runs all: nothing reaches the source
// topic.
//
// Mutations caught: ignoring Reasons fails "one reason", "two reasons"
// and "pointers"; a pointer selected by its own reason only (not its
// original one) fails "one reason" (0:2 missing); a pointer not skipped
// fails every row with 0:2; ignoring Since fails both "since" rows;
// ignoring Offset fails "source partition and offset"; a run that always
// executes fails the end offsets.
func TestSelection(t *testing.T) {
	e := newEnv(t)
	p1, p2, o8 := int32(1), int32(2), int64(8)
	tests := []struct {
		name     string
		o        dlqreplay.Options
		read     int
		want     []string
		byReason map[string]dlqreplay.Count
	}{
		{"one reason", dlqreplay.Options{Reasons: []string{"http_400"}}, 6, []string{"0:0", "0:2 skip", "0:3", "1:0"},
			map[string]dlqreplay.Count{"http_400": {Replay: 3}, "too_large": {Skipped: 1}, "corrupt": {Unselected: 1}, "http_404": {Unselected: 1}}},
		{"two reasons", dlqreplay.Options{Reasons: []string{"corrupt", "http_404"}}, 6, []string{"0:1", "1:1"},
			map[string]dlqreplay.Count{"http_400": {Unselected: 3}, "too_large": {Unselected: 1}, "corrupt": {Replay: 1}, "http_404": {Replay: 1}}},
		{"every reason", dlqreplay.Options{}, 6, []string{"0:0", "0:1", "0:2 skip", "0:3", "1:0", "1:1"},
			map[string]dlqreplay.Count{"http_400": {Replay: 3}, "too_large": {Skipped: 1}, "corrupt": {Replay: 1}, "http_404": {Replay: 1}}},
		{"pointers", dlqreplay.Options{Reasons: []string{"too_large"}}, 6, []string{"0:2 skip"},
			map[string]dlqreplay.Count{"http_400": {Unselected: 3}, "too_large": {Skipped: 1}, "corrupt": {Unselected: 1}, "http_404": {Unselected: 1}}},
		{"source partition", dlqreplay.Options{Partition: &p2}, 6, []string{"0:2 skip", "1:0"},
			map[string]dlqreplay.Count{"http_400": {Replay: 1, Unselected: 2}, "too_large": {Skipped: 1}, "corrupt": {Unselected: 1}, "http_404": {Unselected: 1}}},
		{"source partition and offset", dlqreplay.Options{Partition: &p1, Offset: &o8}, 6, []string{"0:3"},
			map[string]dlqreplay.Count{"http_400": {Replay: 1, Unselected: 2}, "too_large": {Unselected: 1}, "corrupt": {Unselected: 1}, "http_404": {Unselected: 1}}},
		{"since", dlqreplay.Options{Since: e.now.Add(-24 * time.Hour)}, 2, []string{"1:0", "1:1"},
			map[string]dlqreplay.Count{"http_400": {Replay: 1}, "http_404": {Replay: 1}}},
		{"since after everything", dlqreplay.Options{Since: e.now.Add(time.Minute)}, 0, nil, map[string]dlqreplay.Count{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := e.run(t, tt.o)
			if got := positions(res); res.Read != tt.read || !slices.Equal(got, tt.want) || !maps.Equal(res.ByReason, tt.byReason) {
				t.Fatalf("read %d, selected %v, by reason %v; want %d, %v, %v", res.Read, got, res.ByReason, tt.read, tt.want, tt.byReason)
			}
		})
	}
	if ends := e.k.EndOffsets(t, e.src); !maps.Equal(ends, e.sourceEnds) {
		t.Fatalf("a dry run produced: source end offsets %v, were %v", ends, e.sourceEnds)
	}
}

// TestExecute: with Execute, each chosen record goes back to its source
// topic and partition, in dead-letter order, with its original key
// (none stays none), value and headers, and none of the atrelay.* ones;
// the pointer and the other reasons stay behind; the run joins no group.
// The text output lists each record and the counts.
//
// Mutations caught (on kfake and Apache Kafka): keeping the atrelay.*
// headers fails the header comparison; producing to the dead-letter
// partition instead of the source one fails the partitions; consuming in
// a group (kgo.ConsumerGroup) fails the group check.
func TestExecute(t *testing.T) {
	e := newEnv(t)
	adm := e.k.Admin(t)
	ctx := context.Background()
	groups := func() []string {
		t.Helper()
		listed, err := adm.ListGroups(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return listed.Groups()
	}
	groupsBefore := groups()

	res := e.run(t, dlqreplay.Options{Reasons: []string{"http_400"}, Execute: true})
	var out bytes.Buffer
	res.WriteText(&out)
	for _, want := range []string{
		"dead-letter topic " + e.dlq + ": 6 records read, 4 selected\n",
		"replayed      dlq 0:0  http_400  -> " + e.src + " partition 1 (was offset 7)  key \"k1\", 2-byte value\n",
		"replayed      dlq 1:0  http_400  -> " + e.src + " partition 2 (was offset 1)  no key, 2-byte value\n",
		"SKIPPED       dlq 0:2  too_large (was http_400): a pointer: the record was too large for the dead-letter topic and its value was not kept; the original is " + e.src + " partition 2 offset 9, while retention keeps it\n",
		"reason         replayed  skipped  not selected\n",
		"http_400              3        0             0\n",
		"too_large             0        1             0\n",
		"replayed 3 records to their source topic; 1 skipped (not replayable)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	got := e.k.ReadAll(t, e.src, 3)
	if len(got) != 3 {
		t.Fatalf("%d records on the source topic, want 3", len(got))
	}
	type replayed struct {
		partition  int32
		key, value string
		nilKey     bool
		headers    string
	}
	var have []replayed
	for _, r := range got {
		have = append(have, replayed{r.Partition, string(r.Key), string(r.Value), r.Key == nil, fmt.Sprint(r.Headers)})
	}
	slices.SortFunc(have, func(a, b replayed) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
	hdr := func(hs ...kgo.RecordHeader) string { return fmt.Sprint(hs) }
	want := []replayed{
		// Partition 1 keeps the dead-letter order: k1 before k4.
		{1, "k1", "v1", false, hdr(fixture[0].headers...)},
		{1, "k4", "v4", false, hdr()},
		{2, "", "v5", true, hdr(fixture[4].headers...)},
	}
	if !slices.Equal(have, want) {
		t.Fatalf("source topic:\n%+v\nwant:\n%+v", have, want)
	}
	var p1 []string
	for _, r := range got {
		if r.Partition == 1 {
			p1 = append(p1, string(r.Key))
		}
	}
	if !slices.Equal(p1, []string{"k1", "k4"}) {
		t.Errorf("partition 1 order %v", p1)
	}
	if after := groups(); !slices.Equal(slices.Sorted(slices.Values(after)), slices.Sorted(slices.Values(groupsBefore))) {
		t.Errorf("groups before %v, after %v: the replay joined a group", groupsBefore, after)
	}
}

// TestOptionsRefused: what Run refuses before reading anything.
func TestOptionsRefused(t *testing.T) {
	o := int64(1)
	bad := format
	bad.Prefix = ""
	for _, tt := range []struct {
		o    dlqreplay.Options
		want string
	}{
		{dlqreplay.Options{Format: format}, "no dead-letter topic"},
		{dlqreplay.Options{Topic: "t", Format: format, Offset: &o}, "a source offset needs a source partition"},
		{dlqreplay.Options{Topic: "t", Format: bad}, "Format.Prefix is empty"},
	} {
		if _, err := dlqreplay.Run(context.Background(), nil, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("err = %v, want %q", err, tt.want)
		}
	}
}
