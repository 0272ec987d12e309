package dlqreplay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Format is how the dead-letter writer marks a record: the headers it adds
// and the reason it gives a record it wrote without its value. The writer
// (sinks/dlq) owns these names; the assembly passes them in.
type Format struct {
	SourceTopic, SourcePartition, SourceOffset string // where the record was read
	Reason                                     string // why it was dead-lettered
	// OriginalReason is the reason a pointer record replaces with
	// PointerReason.
	OriginalReason string
	// Prefix starts the name of every header the writer adds; a replayed
	// record keeps none of those.
	Prefix string
	// PointerReason is Reason on a pointer: a record too large for the
	// dead-letter topic, written without its value. It cannot be replayed.
	PointerReason string
}

func (f Format) validate() error {
	for name, v := range map[string]string{"SourceTopic": f.SourceTopic, "SourcePartition": f.SourcePartition, "SourceOffset": f.SourceOffset,
		"Reason": f.Reason, "OriginalReason": f.OriginalReason, "Prefix": f.Prefix, "PointerReason": f.PointerReason} {
		if v == "" {
			return fmt.Errorf("dlqreplay: Format.%s is empty", name)
		}
	}
	return nil
}

// Options say what Run reads, which records it selects, and whether it
// replays them.
type Options struct {
	// Topic is the dead-letter topic.
	Topic  string
	Format Format
	// Reasons selects the records whose reason is one of them (for a
	// pointer, its original reason counts too); none selects every reason.
	Reasons []string
	// Partition, when set, selects the records dead-lettered from that
	// partition of their source topic; Offset, from that offset (it needs
	// Partition).
	Partition *int32
	Offset    *int64
	// Since, when set, reads only the records written to the dead-letter
	// topic at or after it (by record timestamp); zero reads from the start.
	Since time.Time
	// Execute re-produces the selected records; false is a dry run.
	Execute bool
}

func (o Options) validate() error {
	if o.Topic == "" {
		return errors.New("dlqreplay: no dead-letter topic")
	}
	if o.Offset != nil && o.Partition == nil {
		return errors.New("dlqreplay: a source offset needs a source partition")
	}
	return o.Format.validate()
}

// Entry is one selected dead-letter record.
type Entry struct {
	Partition int32 // in the dead-letter topic
	Offset    int64
	Reason    string
	// OriginalReason is a pointer's original reason.
	OriginalReason  string
	SourceTopic     string
	SourcePartition int32 // -1 when the header is missing or unreadable
	SourceOffset    int64 // -1 when the header is missing or unreadable
	Key             []byte
	ValueBytes      int
	// Skipped says why the record cannot be replayed; "" when it can.
	Skipped string
}

// Count is how many records of one reason Run read.
type Count struct {
	Replay     int // selected and replayable: replayed, with Execute
	Skipped    int // selected, not replayable
	Unselected int
}

// Result is what Run read and did.
type Result struct {
	Topic    string
	Execute  bool
	Read     int              // dead-letter records read
	Entries  []Entry          // the selected ones, by dead-letter partition and offset
	ByReason map[string]Count // every record read, by reason ("" for none)
}

// Replayable is how many selected records can be replayed.
func (r *Result) Replayable() int {
	n := 0
	for _, e := range r.Entries {
		if e.Skipped == "" {
			n++
		}
	}
	return n
}

// Run reads the dead-letter topic from its start (or o.Since) up to its
// end offsets as Run begins, with a consumer that belongs to no group, and
// selects records as o says. With o.Execute it produces each replayable
// one to its source topic and partition, with its key, value and headers
// less those starting with o.Format.Prefix, in dead-letter order per
// partition, and returns once the broker has acknowledged them all; the
// error then says how many were not. opts are the connection options.
func Run(ctx context.Context, opts []kgo.Opt, o Options) (*Result, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	res := &Result{Topic: o.Topic, Execute: o.Execute, ByReason: map[string]Count{}}
	cl, err := kgo.NewClient(append(slices.Clip(opts), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	from, to, err := bounds(ctx, kadm.NewClient(cl), o.Topic, o.Since)
	if err != nil {
		return nil, err
	}
	if len(from) == 0 {
		return res, nil
	}
	start := map[int32]kgo.Offset{}
	for p, off := range from {
		start[p] = kgo.NewOffset().At(off)
	}
	// Control records are kept so that a partition whose last offset is a
	// transaction marker still reaches its end.
	consumer, err := kgo.NewClient(append(slices.Clip(opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{o.Topic: start}), kgo.KeepControlRecords())...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer consumer.Close()

	var (
		mu       sync.Mutex
		failed   int
		firstErr error
	)
	for len(to) > 0 {
		fs := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := fs.Err0(); err != nil {
			return nil, fmt.Errorf("read %s: %w", o.Topic, err)
		}
		var fetchErr error
		fs.EachError(func(t string, p int32, err error) {
			fetchErr = cmpOr(fetchErr, fmt.Errorf("read %s partition %d: %w", t, p, err))
		})
		if fetchErr != nil {
			return nil, fetchErr
		}
		fs.EachRecord(func(rec *kgo.Record) {
			end, ok := to[rec.Partition]
			if !ok || rec.Offset >= end {
				return // read past the end as Run began
			}
			if rec.Offset+1 >= end {
				delete(to, rec.Partition)
			}
			if rec.Attrs.IsControl() {
				return
			}
			res.Read++
			e, selected := o.entry(rec)
			c := res.ByReason[e.Reason]
			switch {
			case !selected:
				c.Unselected++
			case e.Skipped != "":
				c.Skipped++
			default:
				c.Replay++
			}
			res.ByReason[e.Reason] = c
			if !selected {
				return
			}
			res.Entries = append(res.Entries, e)
			if !o.Execute || e.Skipped != "" {
				return
			}
			out := &kgo.Record{Topic: e.SourceTopic, Partition: e.SourcePartition, Key: rec.Key, Value: rec.Value, Headers: o.originalHeaders(rec)}
			cl.Produce(ctx, out, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					failed++
					firstErr = cmpOr(firstErr, fmt.Errorf("dead-letter %d:%d to %s partition %d: %w", e.Partition, e.Offset, e.SourceTopic, e.SourcePartition, err))
					mu.Unlock()
				}
			})
		})
	}
	slices.SortFunc(res.Entries, func(a, b Entry) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	if o.Execute {
		if err := cl.Flush(ctx); err != nil {
			return res, fmt.Errorf("replay: %w", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if failed > 0 {
			return res, fmt.Errorf("replay: %d of %d records not produced: %w", failed, res.Replayable(), firstErr)
		}
	}
	return res, nil
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// bounds returns, per partition of topic that has records to read, the
// first offset to read (the log start, or the first at or after since) and
// the end offset.
func bounds(ctx context.Context, adm *kadm.Client, topic string, since time.Time) (from, to map[int32]int64, err error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("dead-letter topic %s: list end offsets: %w", topic, err)
	}
	var starts kadm.ListedOffsets
	if since.IsZero() {
		starts, err = adm.ListStartOffsets(ctx, topic)
	} else {
		starts, err = adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dead-letter topic %s: list offsets: %w", topic, err)
	}
	from, to = map[int32]int64{}, map[int32]int64{}
	var errs []error
	ends.Each(func(e kadm.ListedOffset) {
		s, ok := starts.Lookup(topic, e.Partition)
		switch {
		case e.Err != nil:
			errs = append(errs, fmt.Errorf("dead-letter topic %s: %w", topic, e.Err))
		case !ok:
			errs = append(errs, fmt.Errorf("dead-letter topic %s partition %d: no start offset in the answer", topic, e.Partition))
		case s.Err != nil:
			errs = append(errs, fmt.Errorf("dead-letter topic %s partition %d: %w", topic, e.Partition, s.Err))
		case s.Offset >= 0 && s.Offset < e.Offset:
			from[e.Partition], to[e.Partition] = s.Offset, e.Offset
		}
	})
	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return from, to, nil
}

// entry describes rec and says whether o selects it.
func (o Options) entry(rec *kgo.Record) (Entry, bool) {
	e := Entry{Partition: rec.Partition, Offset: rec.Offset, SourcePartition: -1, SourceOffset: -1, Key: rec.Key, ValueBytes: len(rec.Value)}
	f := o.Format
	var badPartition bool
	for _, h := range rec.Headers {
		switch h.Key {
		case f.Reason:
			e.Reason = string(h.Value)
		case f.OriginalReason:
			e.OriginalReason = string(h.Value)
		case f.SourceTopic:
			e.SourceTopic = string(h.Value)
		case f.SourcePartition:
			p, err := strconv.ParseInt(string(h.Value), 10, 32)
			if err != nil || p < 0 {
				badPartition = true
				continue
			}
			e.SourcePartition = int32(p)
		case f.SourceOffset:
			if off, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil && off >= 0 {
				e.SourceOffset = off
			}
		}
	}
	// A pointer has no value: a record the decoder refused as too large
	// (codec.max_record_bytes) has the same reason, and its value.
	pointer := e.Reason == f.PointerReason && len(rec.Value) == 0
	if len(o.Reasons) > 0 && !slices.Contains(o.Reasons, e.Reason) && !(pointer && slices.Contains(o.Reasons, e.OriginalReason)) {
		return e, false
	}
	if o.Partition != nil && e.SourcePartition != *o.Partition {
		return e, false
	}
	if o.Offset != nil && e.SourceOffset != *o.Offset {
		return e, false
	}
	switch {
	case pointer:
		e.Skipped = fmt.Sprintf("a pointer: the record was too large for the dead-letter topic and its value was not kept; the original is %s partition %d offset %d, while retention keeps it",
			e.SourceTopic, e.SourcePartition, e.SourceOffset)
	case e.SourceTopic == "":
		e.Skipped = "no " + f.SourceTopic + " header: its source topic is unknown"
	case e.SourcePartition < 0 || badPartition:
		e.Skipped = "no readable " + f.SourcePartition + " header: its source partition is unknown"
	}
	return e, true
}

// originalHeaders returns rec's headers less the dead-letter writer's.
func (o Options) originalHeaders(rec *kgo.Record) []kgo.RecordHeader {
	var hs []kgo.RecordHeader
	for _, h := range rec.Headers {
		if !strings.HasPrefix(h.Key, o.Format.Prefix) {
			hs = append(hs, h)
		}
	}
	return hs
}

// WriteText writes what Run did: one line per selected record, saying
// where it goes or why it is skipped, then the counts by reason, then one
// line saying whether anything was produced.
func (r *Result) WriteText(w io.Writer) error {
	verb := "would replay"
	if r.Execute {
		verb = "replayed"
	}
	fmt.Fprintf(w, "dead-letter topic %s: %d records read, %d selected\n", r.Topic, r.Read, len(r.Entries))
	for _, e := range r.Entries {
		if e.Skipped != "" {
			reason := e.Reason
			if e.OriginalReason != "" {
				reason += " (was " + e.OriginalReason + ")"
			}
			fmt.Fprintf(w, "SKIPPED       dlq %d:%d  %s: %s\n", e.Partition, e.Offset, reason, e.Skipped)
			continue
		}
		fmt.Fprintf(w, "%-13s dlq %d:%d  %s  -> %s partition %d (was offset %d)  %s, %d-byte value\n",
			verb, e.Partition, e.Offset, e.Reason, e.SourceTopic, e.SourcePartition, e.SourceOffset, keyText(e.Key), e.ValueBytes)
	}
	if len(r.ByReason) > 0 {
		width := len("reason")
		for reason := range r.ByReason {
			width = max(width, len(reason), len("(none)"))
		}
		fmt.Fprintf(w, "%-*s  %12s  %7s  %12s\n", width, "reason", verb, "skipped", "not selected")
		for _, reason := range slices.Sorted(maps.Keys(r.ByReason)) {
			c := r.ByReason[reason]
			if reason == "" {
				reason = "(none)"
			}
			fmt.Fprintf(w, "%-*s  %12d  %7d  %12d\n", width, reason, c.Replay, c.Skipped, c.Unselected)
		}
	}
	n, skipped := r.Replayable(), len(r.Entries)-r.Replayable()
	var err error
	if r.Execute {
		_, err = fmt.Fprintf(w, "replayed %d records to their source topic; %d skipped (not replayable)\n", n, skipped)
	} else {
		_, err = fmt.Fprintf(w, "dry run: %d records would be replayed, %d skipped (not replayable); nothing produced; add --execute to replay\n", n, skipped)
	}
	return err
}

func keyText(k []byte) string {
	if k == nil {
		return "no key"
	}
	if len(k) > 32 {
		return fmt.Sprintf("key %q…", k[:32])
	}
	return fmt.Sprintf("key %q", k)
}
