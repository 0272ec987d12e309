// Package testkafka is the one place tests get a Kafka broker: in-process
// kfake by default, or the real broker named by ATRELAY_TEST_BROKERS, so the
// same tests with the same assertions run against both.
package testkafka

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvBrokers names the environment variable holding a real broker list
// (comma-separated host:port). When it is empty, tests use kfake.
const EnvBrokers = "ATRELAY_TEST_BROKERS"

// Cluster is a broker for one test, closed by t.Cleanup.
type Cluster struct {
	brokers []string
	fake    *kfake.Cluster
}

// New returns the test's broker.
func New(t testing.TB) *Cluster {
	t.Helper()
	if env := os.Getenv(EnvBrokers); env != "" {
		return &Cluster{brokers: strings.Split(env, ",")}
	}
	fake, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(fake.Close)
	return &Cluster{brokers: fake.ListenAddrs(), fake: fake}
}

// Brokers returns the seed brokers.
func (c *Cluster) Brokers() []string { return c.brokers }

// Real reports whether this is a real Apache Kafka broker.
func (c *Cluster) Real() bool { return c.fake == nil }

// Fake returns the kfake cluster, or nil on a real broker.
func (c *Cluster) Fake() *kfake.Cluster { return c.fake }

// RequireFake skips a test that needs kfake's request control on a real
// broker.
func (c *Cluster) RequireFake(t testing.TB) {
	t.Helper()
	if c.fake == nil {
		t.Skip("needs kfake's ControlKey; running against a real broker")
	}
}

var seq atomic.Int64

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// Name returns a topic or group name unique to this test run, so tests can
// share one real broker.
func (c *Cluster) Name(t testing.TB, prefix string) string {
	base := unsafeName.ReplaceAllString(t.Name(), "_")
	if len(base) > 60 {
		base = base[:60]
	}
	return fmt.Sprintf("%s.%s.%d.%d", prefix, base, time.Now().UnixNano()%1e9, seq.Add(1))
}

// Client returns a client to the cluster, closed by t.Cleanup.
func (c *Cluster) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.brokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns an admin client, closed by t.Cleanup.
func (c *Cluster) Admin(t testing.TB) *kadm.Client {
	return kadm.NewClient(c.Client(t))
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// CreateTopic creates a topic with partitions and replication factor 1.
func (c *Cluster) CreateTopic(t testing.TB, name string, partitions int32) {
	t.Helper()
	resp, err := c.Admin(t).CreateTopic(ctx(t), partitions, 1, nil, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	c.waitTopic(t, name, partitions)
}

// waitTopic returns once every partition of topic has a leader in the
// metadata the brokers answer with: a real broker acknowledges CreateTopics
// before its metadata shows the topic, and a test that looks at once (check
// --connect, a producer) would find nothing. There is no notification to
// wait on, so it asks again until the metadata says so.
func (c *Cluster) waitTopic(t testing.TB, name string, partitions int32) {
	t.Helper()
	ctx := ctx(t)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := c.Admin(t).ListTopics(ctx, name)
		if err == nil {
			if td, ok := d[name]; ok && td.Err == nil && int32(len(td.Partitions)) == partitions {
				ready := true
				for _, p := range td.Partitions {
					ready = ready && p.Leader >= 0 && p.Err == nil
				}
				if ready {
					return
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s: not in the brokers' metadata: %v", name, err)
		case <-tick.C:
		}
	}
}

// Produce writes records synchronously, failing the test on any error.
func (c *Cluster) Produce(t testing.TB, recs ...*kgo.Record) {
	t.Helper()
	cl := c.Client(t, kgo.ProducerLinger(5*time.Millisecond), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const chunk = 5000
	for i := 0; i < len(recs); i += chunk {
		if err := cl.ProduceSync(ctx(t), recs[i:min(i+chunk, len(recs))]...).FirstErr(); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
}

// EndOffsets returns the end offset of each partition of topic.
func (c *Cluster) EndOffsets(t testing.TB, topic string) map[int32]int64 {
	t.Helper()
	ends, err := c.Admin(t).ListEndOffsets(ctx(t), topic)
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// Committed returns the group's committed offset per partition of topic.
func (c *Cluster) Committed(t testing.TB, group, topic string) map[int32]int64 {
	t.Helper()
	offs, err := c.Admin(t).FetchOffsets(ctx(t), group)
	if err != nil {
		t.Fatalf("fetch offsets: %v", err)
	}
	out := map[int32]int64{}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out
}

// ReadAll consumes a topic from the start until it has n records or ctx
// ends, and returns them.
func (c *Cluster) ReadAll(t testing.TB, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := c.Client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	c2 := ctx(t)
	for len(out) < n {
		fs := cl.PollFetches(c2)
		if c2.Err() != nil {
			t.Fatalf("read %s: got %d records, want %d", topic, len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
}
