package groupoffsets_test

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/atrelay/atrelay/internal/groupoffsets"
)

// TestPlanFormats: the CSV a plan is written as is, byte for byte,
// kafka-consumer-groups' single-group --export (what Kafka 4.4's
// ConsumerGroupCommand printed for a topic t1 of three partitions:
// "t1,2,0\nt1,1,0\nt1,0,0\n" then an empty line; a topic name longer than
// 24 characters in double quotes); both of Kafka's CSV forms and the JSON
// form read back; malformed files are refused, naming the line.
//
// Mutations caught: writing a header line ("topic,partition,offset")
// fails the byte comparison and Kafka's --from-file (see
// TestAgainstKafkaConsumerGroups); not quoting long names (as first
// written) fails "CSV of a long name"; reading only the four-column form
// fails "kafka's export".
func TestPlanFormats(t *testing.T) {
	rows := []groupoffsets.Row{{Partition: 0, Target: 3}, {Partition: 1, Target: -1}, {Partition: 2, Target: 5}}
	plan := groupoffsets.PlanOf("g", "events", rows)
	var csv strings.Builder
	if err := plan.WriteCSV(&csv); err != nil {
		t.Fatal(err)
	}
	if csv.String() != "events,0,3\nevents,2,5\n" {
		t.Fatalf("CSV:\n%q", csv.String())
	}
	// Kafka's CSV writer quotes a name longer than 24 characters (seen in
	// TestAgainstKafkaConsumerGroups' exports).
	csv.Reset()
	groupoffsets.PlanOf("g", "events.purchasely.v1.prod", rows[:1]).WriteCSV(&csv)
	if csv.String() != `"events.purchasely.v1.prod",0,3`+"\n" {
		t.Fatalf("CSV of a long name:\n%q", csv.String())
	}
	dir := t.TempDir()
	for _, name := range []string{"plan.csv", "plan", "plan.json", "PLAN.JSON"} {
		path := filepath.Join(dir, name)
		if err := groupoffsets.WritePlanFile(path, plan); err != nil {
			t.Fatal(err)
		}
		got, err := groupoffsets.ReadPlanFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := plan
		if !strings.HasSuffix(strings.ToLower(name), ".json") {
			want.Group = "" // the CSV does not say
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: read %+v, wrote %+v", name, got, want)
		}
	}

	good := []struct {
		name, csv string
		want      []groupoffsets.PlanOffset
	}{
		{"kafka's export", "t1,2,0\nt1,1,0\nt1,0,0\n\n", []groupoffsets.PlanOffset{{Topic: "t1", Partition: 2}, {Topic: "t1", Partition: 1}, {Topic: "t1", Partition: 0}}},
		{"several groups", "g1,t1,0,7\ng2,t1,0,9\n", []groupoffsets.PlanOffset{{Group: "g1", Topic: "t1", Offset: 7}, {Group: "g2", Topic: "t1", Offset: 9}}},
		{"CRLF", "t1,0,7\r\n", []groupoffsets.PlanOffset{{Topic: "t1", Offset: 7}}},
		{"quoted", `"events.purchasely.v1.prod",1,7` + "\n", []groupoffsets.PlanOffset{{Topic: "events.purchasely.v1.prod", Partition: 1, Offset: 7}}},
	}
	for _, tt := range good {
		p, err := groupoffsets.ReadPlanCSV(strings.NewReader(tt.csv))
		if err != nil || !reflect.DeepEqual(p.Offsets, tt.want) {
			t.Errorf("%s: %+v, %v", tt.name, p.Offsets, err)
		}
	}
	bad := []struct{ csv, want string }{
		{"", "no offsets"},
		{"t1,0\n", "line 1: want topic,partition,offset"},
		{"t1,0,1\ng,t1,0,1\n", "line 2: want topic,partition,offset"},
		{"t1,0,1\nt1,x,1\n", `line 2: "t1,x,1" is not topic,partition,offset`},
		{"t1,0,-1\n", `line 1: "t1,0,-1" is not`},
		{",0,1\n", "is not topic,partition,offset"},
	}
	for _, tt := range bad {
		if _, err := groupoffsets.ReadPlanCSV(strings.NewReader(tt.csv)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.csv, err, tt.want)
		}
	}
	for _, js := range []string{`{"offsets": []}`, `{"offsets": [{"topic": "t", "partition": 0, "offset": 1, "extra": 1}]}`,
		`{"offsets": [{"topic": "", "partition": 0, "offset": 1}]}`, `{"offsets": [{"topic": "t", "partition": -1, "offset": 1}]}`, `[]`} {
		if _, err := groupoffsets.ReadPlanJSON(strings.NewReader(js)); err == nil {
			t.Errorf("%s accepted", js)
		}
	}
}

// TestExportThenFromFile: a plan exported (CSV or JSON) and re-applied
// with FromPlan commits the same offsets as the reset that exported it.
//
// Mutation caught: PlanOf exporting Requested instead of Target (the
// unclamped offsets) commits the same on re-apply only because FromPlan
// clamps too; so the case shifts back below partition 1's start and
// checks the file's offsets as well.
func TestExportThenFromFile(t *testing.T) {
	l := setup(t)
	shift, _ := groupoffsets.ShiftBy(-5).Only([]int32{0, 1})
	for _, name := range []string{"plan.csv", "plan.json"} {
		t.Run(name, func(t *testing.T) {
			l.commit(t)
			rows, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, shift, true)
			if err != nil {
				t.Fatal(err)
			}
			want := l.committed(t)
			if want != [3]int64{0, 4, 2} {
				t.Fatalf("shift committed %v", want)
			}
			path := filepath.Join(t.TempDir(), name)
			if err := groupoffsets.WritePlanFile(path, groupoffsets.PlanOf(l.group, l.topic, rows)); err != nil {
				t.Fatal(err)
			}
			plan, err := groupoffsets.ReadPlanFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Offsets) != 2 || plan.Offsets[1].Offset != 4 {
				t.Fatalf("plan %+v", plan)
			}
			l.commit(t)
			if _, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, groupoffsets.FromPlan(plan), true); err != nil {
				t.Fatal(err)
			}
			if got := l.committed(t); got != want {
				t.Fatalf("re-applied: committed %v, want %v", got, want)
			}
		})
	}
}
