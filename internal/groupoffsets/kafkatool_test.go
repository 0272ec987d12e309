package groupoffsets_test

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/atrelay/atrelay/internal/groupoffsets"
	"github.com/atrelay/atrelay/internal/testkafka"
)

// consumerGroupCommand is the class of kafka-consumer-groups.sh in Kafka 4:
// kafka.admin.ConsumerGroupCommand (Scala) is gone since 4.0, and the Java
// one lives in the kafka-tools jar, which the broker's jars
// (deploy/kafka/pom.xml: kafka_2.13 and its dependencies) do not include.
const consumerGroupCommand = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"

// TestAgainstKafkaConsumerGroups runs Kafka's own kafka-consumer-groups
// (ConsumerGroupCommand --reset-offsets --dry-run, from the same release
// as the broker) beside each of our strategies on the same group and
// topic, and compares the two plans partition by partition; then feeds
// each tool's --export to the other's --from-file. Real broker only.
//
// Mutations caught (tried on Apache Kafka 4.4): not clamping (Kafka says
// 2, 4, 0 for --shift-by -3, we said 2, 3, -1; --shift-by 100 and
// --to-offset 2 likewise); by-duration added to now (Kafka 7, 7, 6, we
// 10, 10, 6); a header line in our CSV export (Kafka's --from-file prints
// no plan for it); not quoting names longer than 24 characters (Kafka's
// export quotes them: how this test found the rule).
func TestAgainstKafkaConsumerGroups(t *testing.T) {
	if os.Getenv(testkafka.EnvBrokers) == "" {
		t.Skip("compares with Kafka's kafka-consumer-groups on a real broker: run under deploy/kafka/with-broker.sh")
	}
	tool := newKafkaTool(t)
	l := setup(t)
	only := func(s groupoffsets.Strategy, ps ...int32) groupoffsets.Strategy {
		s, err := s.Only(ps)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	at := l.recordTime(3).Add(-10 * time.Minute).UTC()
	tests := []struct {
		name  string
		ours  groupoffsets.Strategy
		kafka []string // after --reset-offsets --topic
	}{
		{"earliest", groupoffsets.Earliest(), []string{l.topic, "--to-earliest"}},
		{"latest", groupoffsets.Latest(), []string{l.topic, "--to-latest"}},
		{"time", groupoffsets.At(at), []string{l.topic, "--to-datetime", at.Format("2006-01-02T15:04:05.000Z07:00")}},
		{"time after every record", groupoffsets.At(l.now.Add(time.Hour)), []string{l.topic, "--to-datetime", l.now.Add(time.Hour).UTC().Format("2006-01-02T15:04:05.000Z07:00")}},
		{"by duration", groupoffsets.ByDuration(3 * time.Hour), []string{l.topic, "--by-duration", "PT3H"}},
		{"shift forward", groupoffsets.ShiftBy(2), []string{l.topic, "--shift-by", "2"}},
		{"shift back below the start", groupoffsets.ShiftBy(-3), []string{l.topic, "--shift-by", "-3"}},
		{"shift past the end", groupoffsets.ShiftBy(100), []string{l.topic, "--shift-by", "100"}},
		{"partitions", only(groupoffsets.ShiftBy(-2), 0, 2), []string{l.topic + ":0,2", "--shift-by", "-2"}},
		{"explicit offsets", groupoffsets.Offsets(map[int32]int64{0: 5, 1: 5, 2: 5}), []string{l.topic, "--to-offset", "5"}},
		// Kafka clamps --to-offset; our typed pairs refuse instead, and
		// our plans clamp like it.
		{"plan, clamped", groupoffsets.FromPlan(groupoffsets.Plan{Offsets: []groupoffsets.PlanOffset{
			{Topic: l.topic, Partition: 0, Offset: 2}, {Topic: l.topic, Partition: 1, Offset: 2}, {Topic: l.topic, Partition: 2, Offset: 2}}}),
			[]string{l.topic, "--to-offset", "2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.commit(t)
			rows, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, tt.ours, false)
			if err != nil {
				t.Fatal(err)
			}
			ours := planOf(rows)
			theirs := tool.dryRun(t, l.group, tt.kafka...)
			t.Logf("kafka-consumer-groups %s: %v; ours: %v", strings.Join(tt.kafka[1:], " "), theirs, ours)
			if !maps.Equal(ours, theirs) {
				t.Fatalf("plans differ:\n ours  %v\n kafka %v", ours, theirs)
			}
		})
	}

	t.Run("our export, kafka's from-file", func(t *testing.T) {
		l.commit(t)
		shift := only(groupoffsets.ShiftBy(-3), 0, 1)
		rows, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, shift, false)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "plan.csv")
		if err := groupoffsets.WritePlanFile(path, groupoffsets.PlanOf(l.group, l.topic, rows)); err != nil {
			t.Fatal(err)
		}
		theirs := tool.dryRun(t, l.group, l.topic, "--from-file", path)
		if ours := planOf(rows); !maps.Equal(ours, theirs) {
			t.Fatalf("kafka read our export as %v; ours %v", theirs, ours)
		}
	})

	t.Run("kafka's export, our from-file", func(t *testing.T) {
		l.commit(t)
		out := tool.run(t, "--group", l.group, "--reset-offsets", "--topic", l.topic+":1,2", "--shift-by", "-3", "--dry-run", "--export")
		// Our CSV export is Kafka's, line for line (Kafka's order is a
		// map's).
		shift := only(groupoffsets.ShiftBy(-3), 1, 2)
		rows, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, shift, false)
		if err != nil {
			t.Fatal(err)
		}
		var ourCSV strings.Builder
		groupoffsets.PlanOf(l.group, l.topic, rows).WriteCSV(&ourCSV)
		if got, want := sortedLines(out), sortedLines(ourCSV.String()); !slices.Equal(got, want) {
			t.Fatalf("kafka's export:\n%s\nours:\n%s", out, ourCSV.String())
		}
		plan, err := groupoffsets.ReadPlanCSV(strings.NewReader(out))
		if err != nil {
			t.Fatalf("reading kafka's export: %v\n%s", err, out)
		}
		if _, err := groupoffsets.Reset(context.Background(), l.adm, l.group, l.topic, groupoffsets.FromPlan(plan), true); err != nil {
			t.Fatal(err)
		}
		if got, want := l.committed(t), [3]int64{committed[0], 4, 0}; got != want {
			t.Fatalf("committed %v, want %v", got, want)
		}
	})
}

// planOf is the partitions a reset moves and their new offsets.
func planOf(rows []groupoffsets.Row) map[int32]int64 {
	m := map[int32]int64{}
	for _, r := range rows {
		if r.Target >= 0 {
			m[r.Partition] = r.Target
		}
	}
	return m
}

func sortedLines(s string) []string {
	return slices.Sorted(slices.Values(strings.Fields(s)))
}

// kafkaTool runs Kafka's ConsumerGroupCommand against the test broker.
type kafkaTool struct {
	classpath string
	brokers   string
}

// newKafkaTool finds the broker's jars (with-broker.sh's classpath file)
// and the two that ConsumerGroupCommand needs beyond them: kafka-tools and
// jackson-dataformat-csv (for --export and --from-file), at the broker's
// versions. It takes them from the classpath when the pom has them, else
// from tools-<version>/ beside the broker's jar cache, fetching them there
// with Maven once. It skips the test when they cannot be had, unless
// CI=true.
func newKafkaTool(t *testing.T) *kafkaTool {
	t.Helper()
	dir := os.Getenv("ATRELAY_KAFKA_DIR")
	if dir == "" {
		t.Skip("needs the broker's jars: ATRELAY_KAFKA_DIR, set by deploy/kafka/with-broker.sh")
	}
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	data, err := os.ReadFile(filepath.Join(dir, "classpath"))
	if err != nil {
		unavailable("the broker's classpath: %v", err)
	}
	jars := strings.FieldsFunc(string(data), func(r rune) bool { return r == ':' || r == '\n' })
	version, jackson := jarVersion(jars, "kafka-clients"), jarVersion(jars, "jackson-databind")
	if version == "" || jackson == "" || jarVersion(jars, "kafka-tools") == version {
		if version == "" || jackson == "" {
			unavailable("no kafka-clients or jackson-databind jar in %s/classpath", dir)
		}
		return &kafkaTool{classpath: strings.Join(jars, ":"), brokers: os.Getenv(testkafka.EnvBrokers)}
	}
	extra := []struct{ artifact, file string }{
		{"org.apache.kafka:kafka-tools:" + version, "kafka-tools-" + version + ".jar"},
		{"com.fasterxml.jackson.dataformat:jackson-dataformat-csv:" + jackson, "jackson-dataformat-csv-" + jackson + ".jar"},
	}
	tools := filepath.Join(filepath.Dir(filepath.Dir(jars[0])), "tools-"+version)
	if _, err := os.Stat(filepath.Join(tools, extra[1].file)); err != nil {
		if _, err := exec.LookPath("mvn"); err != nil {
			unavailable("no %s and no mvn to fetch it", tools)
		}
		scratch, err := os.MkdirTemp(filepath.Dir(tools), ".tools.")
		if err != nil {
			unavailable("%v", err)
		}
		defer os.RemoveAll(scratch)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		for _, e := range extra {
			cmd := exec.CommandContext(ctx, "mvn", "-B", "-q", "-Dstyle.color=never", "dependency:copy", "-Dartifact="+e.artifact, "-DoutputDirectory="+scratch)
			if out, err := cmd.CombinedOutput(); err != nil {
				unavailable("mvn could not fetch %s (is Maven Central reachable?): %v\n%s", e.artifact, err, out)
			}
		}
		// Renamed into place complete, or not at all; a concurrent run
		// that got there first is as good.
		if err := os.Rename(scratch, tools); err != nil {
			if _, statErr := os.Stat(filepath.Join(tools, extra[1].file)); statErr != nil {
				unavailable("%v", err)
			}
		}
	}
	for _, e := range extra {
		jars = append(jars, filepath.Join(tools, e.file))
	}
	return &kafkaTool{classpath: strings.Join(jars, ":"), brokers: os.Getenv(testkafka.EnvBrokers)}
}

// jarVersion returns the version of jar name in jars ("" if absent).
func jarVersion(jars []string, name string) string {
	for _, j := range jars {
		v, ok := strings.CutPrefix(filepath.Base(j), name+"-")
		if ok && strings.HasSuffix(v, ".jar") && v != "" && v[0] >= '0' && v[0] <= '9' {
			return strings.TrimSuffix(v, ".jar")
		}
	}
	return ""
}

// run runs ConsumerGroupCommand with args and returns its standard output.
func (k *kafkaTool) run(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "java", append([]string{"-Xmx256m", "-cp", k.classpath, consumerGroupCommand, "--bootstrap-server", k.brokers}, args...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) || ctx.Err() != nil {
			t.Fatalf("kafka-consumer-groups %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
		}
		t.Fatal(err)
	}
	return stdout.String()
}

// dryRun runs `--reset-offsets --topic <kafka[0]> <kafka[1:]> --dry-run`
// for group and returns the plan it prints (GROUP TOPIC PARTITION
// NEW-OFFSET lines).
func (k *kafkaTool) dryRun(t *testing.T, group string, kafka ...string) map[int32]int64 {
	t.Helper()
	args := append([]string{"--group", group, "--reset-offsets", "--topic", kafka[0]}, kafka[1:]...)
	out := k.run(t, append(args, "--dry-run")...)
	plan := map[int32]int64{}
	topic, _, _ := strings.Cut(kafka[0], ":")
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != group || f[1] != topic {
			continue
		}
		p, perr := strconv.ParseInt(f[2], 10, 32)
		o, oerr := strconv.ParseInt(f[3], 10, 64)
		if perr != nil || oerr != nil {
			t.Fatalf("unreadable plan line %q", line)
		}
		plan[int32(p)] = o
	}
	if len(plan) == 0 {
		t.Fatalf("no plan in kafka-consumer-groups' output:\n%s", out)
	}
	return plan
}
