package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/atrelay/atrelay/sinks/dlq"
	"github.com/atrelay/atrelay/sinks/park"
)

// The environment with-broker.sh sets (deploy/kafka/README.md).
const (
	EnvBrokers = "ATRELAY_TEST_BROKERS"
	EnvCtl     = "ATRELAY_KAFKA_CTL"
)

// Kafka is a run's broker.
type Kafka struct {
	kind    string // "kfake" or "kafka"
	brokers []string
	fake    *kfake.Cluster
	ctl     string // broker-ctl.sh, on a real broker

	mu     sync.Mutex
	ids    map[[16]byte]string // topic ids, for requests that name topics by id
	maxGen map[string]int32
}

// newFake starts a kfake cluster in this process.
func newFake() (*Kafka, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	return &Kafka{kind: "kfake", brokers: c.ListenAddrs(), fake: c, ids: map[[16]byte]string{}, maxGen: map[string]int32{}}, nil
}

// realKafka is the broker with-broker.sh started, or nil.
func realKafka() *Kafka {
	env := os.Getenv(EnvBrokers)
	if env == "" {
		return nil
	}
	return &Kafka{kind: "kafka", brokers: strings.Split(env, ","), ctl: os.Getenv(EnvCtl)}
}

func (k *Kafka) close() {
	if k.fake != nil {
		k.fake.Close()
	}
}

func (k *Kafka) client(opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.brokers...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// createTopic creates a topic and returns once the brokers' metadata shows
// every partition with a leader.
func (k *Kafka) createTopic(ctx context.Context, adm *kadm.Client, name string, parts int32, configs map[string]*string) error {
	resp, err := adm.CreateTopic(ctx, parts, 1, configs, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", name, err)
	}
	if k.fake != nil {
		if info := k.fake.TopicInfo(name); info != nil {
			k.mu.Lock()
			k.ids[info.TopicID] = name
			k.mu.Unlock()
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		d, err := adm.ListTopics(ctx, name)
		if td, ok := d[name]; err == nil && ok && td.Err == nil && int32(len(td.Partitions)) == parts {
			ready := true
			for _, p := range td.Partitions {
				ready = ready && p.Leader >= 0 && p.Err == nil
			}
			if ready {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s not in the metadata: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}

// restart stops the real broker for down, then starts it again.
func (k *Kafka) restart(ctx context.Context, down time.Duration) error {
	if k.ctl == "" {
		return errors.New("no broker control (ATRELAY_KAFKA_CTL)")
	}
	if out, err := exec.CommandContext(ctx, "bash", k.ctl, "stop").CombinedOutput(); err != nil {
		return fmt.Errorf("broker stop: %w\n%s", err, out)
	}
	select { // the outage's length is the fault itself
	case <-time.After(down):
	case <-ctx.Done():
	}
	if out, err := exec.CommandContext(context.WithoutCancel(ctx), "bash", k.ctl, "start").CombinedOutput(); err != nil {
		return fmt.Errorf("broker start: %w\n%s", err, out)
	}
	return nil
}

func (k *Kafka) topicName(name string, id [16]byte) string {
	if name != "" {
		return name
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ids[id]
}

// watch installs kfake's controls for a run: every OffsetCommit request
// is recorded in the ledger (with whether its generation is older than the
// group's); every write to the DLQ and parking topics is recorded with the
// source position its headers name, before the broker acknowledges it.
// (The session timeout is the configuration's kafka.session_timeout, on
// both brokers: see Settings.)
func (k *Kafka) watch(led *Ledger) {
	c := k.fake
	gen := func(group string, g int32) {
		k.mu.Lock()
		if g > k.maxGen[group] {
			k.maxGen[group] = g
		}
		k.mu.Unlock()
	}
	c.ControlKey(int16(kmsg.SyncGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.SyncGroupRequest)
		gen(r.Group, r.Generation)
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.HeartbeatRequest)
		gen(r.Group, r.Generation)
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.OffsetCommitRequest)
		k.mu.Lock()
		stale := r.Generation >= 0 && r.Generation < k.maxGen[r.Group]
		k.mu.Unlock()
		seq := led.tick()
		for _, t := range r.Topics {
			o := commitObs{seq: seq, group: r.Group, topic: k.topicName(t.Topic, t.TopicID), request: true,
				gen: r.Generation, member: r.MemberID, stale: stale, offsets: map[int32]int64{}}
			for _, p := range t.Partitions {
				o.offsets[p.Partition] = p.Offset
			}
			led.sawCommit(o)
		}
		gen(r.Group, r.Generation)
		return nil, nil, false
	})
	dec := kgo.DefaultDecompressor()
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r := req.(*kmsg.ProduceRequest)
		for _, t := range r.Topics {
			topic := k.topicName(t.Topic, t.TopicID)
			if topic != led.dlqTopic && topic != led.parkTopic {
				continue
			}
			for _, p := range t.Partitions {
				eachRecord(dec, p.Records, func(rec *kmsg.Record) {
					srcTopic, src, ok := source(topic == led.dlqTopic, rec.Headers)
					if ok {
						led.sawWrite(topic, srcTopic, src)
					}
				})
			}
		}
		return nil, nil, false
	})
}

// eachRecord calls fn with every record of the record batches in raw.
func eachRecord(dec kgo.Decompressor, raw []byte, fn func(*kmsg.Record)) {
	for len(raw) > 12 {
		length := int(binary.BigEndian.Uint32(raw[8:12])) + 12
		if length > len(raw) {
			return
		}
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw[:length]); err != nil {
			return
		}
		raw = raw[length:]
		data, err := dec.Decompress(b.Records, kgo.CompressionCodecType(b.Attributes&0x7))
		if err != nil {
			continue
		}
		for i := int32(0); i < b.NumRecords && len(data) > 0; i++ {
			n, size := binary.Varint(data)
			if size <= 0 || int(n)+size > len(data) {
				break
			}
			var rec kmsg.Record
			if err := rec.ReadFrom(data[:int(n)+size]); err == nil {
				fn(&rec)
			}
			data = data[int(n)+size:]
		}
	}
}

// source returns the position a DLQ (or parking) record's headers name.
func source(isDLQ bool, headers []kmsg.Header) (string, pos, bool) {
	hTopic, hPart, hOff := dlq.HeaderTopic, dlq.HeaderPartition, dlq.HeaderOffset
	if !isDLQ {
		hTopic, hPart, hOff = park.HeaderTopic, park.HeaderPartition, park.HeaderOffset
	}
	var topic string
	var p, off int64 = -1, -1
	for _, h := range headers {
		switch h.Key {
		case hTopic:
			topic = string(h.Value)
		case hPart:
			p, _ = strconv.ParseInt(string(h.Value), 10, 32)
		case hOff:
			off, _ = strconv.ParseInt(string(h.Value), 10, 64)
		}
	}
	return topic, pos{int32(p), off}, topic != "" && p >= 0 && off >= 0
}

// sample records the committed offsets of the run's groups every 100 ms
// until ctx ends, each with the DLQ and parking topics' end offsets read
// right after: a record dead-lettered or parked below those was
// acknowledged by then.
func sample(ctx context.Context, adm *kadm.Client, led *Ledger) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	groups := []struct{ group, topic string }{{led.group, led.topic}, {led.group + parkGroupSuffix, led.parkTopic}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var obs []commitObs
		for _, g := range groups {
			offs, err := adm.FetchOffsets(ctx, g.group)
			if err != nil {
				continue
			}
			o := commitObs{group: g.group, topic: g.topic, offsets: map[int32]int64{}}
			offs.Each(func(r kadm.OffsetResponse) {
				if r.Topic == g.topic && r.Err == nil && r.At >= 0 {
					o.offsets[r.Partition] = r.At
				}
			})
			if len(o.offsets) > 0 {
				obs = append(obs, o)
			}
		}
		if len(obs) == 0 {
			continue
		}
		seq := led.tick()
		ends, err := adm.ListEndOffsets(ctx, led.dlqTopic, led.parkTopic)
		if err != nil {
			continue
		}
		e := map[string]map[int32]int64{led.dlqTopic: {}, led.parkTopic: {}}
		ends.Each(func(o kadm.ListedOffset) {
			if o.Err == nil {
				e[o.Topic][o.Partition] = o.Offset
			}
		})
		for _, o := range obs {
			o.seq, o.ends = seq, e
			led.sawCommit(o)
		}
	}
}

// kmsgHeader is a header of either client's record type.
type kmsgHeader = kmsg.Header

// sourceOf is source for headers read by a consumer.
func sourceOf(isDLQ bool, headers []kmsgHeader) (string, pos, bool) { return source(isDLQ, headers) }
