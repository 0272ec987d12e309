package groupoffsets

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Strategy is how Reset computes the new offsets, one of
// kafka-consumer-groups' --reset-offsets strategies: build it with
// Earliest, Latest, At, ByDuration, ShiftBy, Offsets, FromPlan or ParseTo,
// and narrow it to some partitions with Only. The zero Strategy is
// invalid. A Strategy is a value: Only returns a copy.
type Strategy struct {
	kind       kind
	at         time.Time
	dur        time.Duration
	shift      int64
	offsets    map[int32]int64
	plan       Plan
	partitions []int32 // nil: every partition
}

type kind int

const (
	invalid kind = iota
	earliest
	latest
	atTime
	byDuration
	shiftBy
	explicit
	fromPlan
)

// Earliest moves to each partition's log start offset
// (kafka-consumer-groups --to-earliest).
func Earliest() Strategy { return Strategy{kind: earliest} }

// Latest moves to each partition's end offset: nothing left to consume
// (--to-latest).
func Latest() Strategy { return Strategy{kind: latest} }

// At moves to the first offset whose record timestamp is at or after t; a
// partition with no such record moves to its end (--to-datetime).
func At(t time.Time) Strategy { return Strategy{kind: atTime, at: t} }

// ByDuration is At(now - d), now being when Reset runs (--by-duration).
func ByDuration(d time.Duration) Strategy { return Strategy{kind: byDuration, dur: d} }

// ShiftBy moves each partition's committed offset by n (negative: back),
// clamped to the log: below the log start gives the log start, beyond the
// end gives the end (--shift-by). A partition with nothing committed
// cannot be shifted: Reset fails naming it.
func ShiftBy(n int64) Strategy { return Strategy{kind: shiftBy, shift: n} }

// Offsets moves the named partitions to the given offsets and leaves the
// others alone. Unlike a plan, an offset outside the log is refused rather
// than clamped: typed by hand, it is a mistake.
func Offsets(offsets map[int32]int64) Strategy {
	return Strategy{kind: explicit, offsets: offsets}
}

// FromPlan applies a saved plan (--from-file): the partitions it names
// move to its offsets, clamped to the log as kafka-consumer-groups does
// (retention may have moved the log start since it was written); the
// others are left alone. The plan must be for the reset's topic, and for
// its group when it names one.
func FromPlan(p Plan) Strategy { return Strategy{kind: fromPlan, plan: p} }

// Only narrows s to partitions: the others keep their committed offsets
// (kafka-consumer-groups --topic t:0,3). Offsets and FromPlan name their
// partitions already, so Only fails on them.
func (s Strategy) Only(partitions []int32) (Strategy, error) {
	if s.kind == explicit || s.kind == fromPlan {
		flag := "--from-file"
		if s.kind == explicit {
			flag = "--to partition:offset"
		}
		return s, fmt.Errorf("--partitions does not go with %s: it names its partitions", flag)
	}
	s.partitions = slices.Clone(partitions)
	return s, nil
}

// String names s as its flag would: "--to earliest", "--shift-by -3", …
func (s Strategy) String() string {
	var b string
	switch s.kind {
	case earliest:
		b = "--to earliest"
	case latest:
		b = "--to latest"
	case atTime:
		b = "--to " + s.at.Format(time.RFC3339Nano)
	case byDuration:
		b = "--by-duration " + s.dur.String()
	case shiftBy:
		b = "--shift-by " + strconv.FormatInt(s.shift, 10)
	case explicit:
		pairs := make([]string, 0, len(s.offsets))
		for _, p := range slices.Sorted(maps.Keys(s.offsets)) {
			pairs = append(pairs, fmt.Sprintf("%d:%d", p, s.offsets[p]))
		}
		b = "--to " + strings.Join(pairs, ",")
	case fromPlan:
		b = "--from-file"
	default:
		return "no strategy"
	}
	if s.partitions != nil {
		b += " --partitions " + formatPartitions(s.partitions)
	}
	return b
}

// ParseTo reads --to: earliest, latest, an RFC 3339 time, or
// partition:offset pairs ("0:120,3:0").
func ParseTo(to string) (Strategy, error) {
	switch to {
	case "earliest":
		return Earliest(), nil
	case "latest":
		return Latest(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, to); err == nil {
		return At(t), nil
	}
	bad := fmt.Errorf("%q: want earliest, latest, an RFC 3339 time (2026-11-01T00:00:00Z) or partition:offset pairs (0:120,3:0)", to)
	if !strings.Contains(to, ":") || strings.Contains(to, "T") {
		return Strategy{}, bad
	}
	offsets := map[int32]int64{}
	for pair := range strings.SplitSeq(to, ",") {
		ps, os, ok := strings.Cut(strings.TrimSpace(pair), ":")
		p, perr := strconv.ParseInt(ps, 10, 32)
		o, oerr := strconv.ParseInt(os, 10, 64)
		if !ok || perr != nil || oerr != nil || p < 0 || o < 0 {
			return Strategy{}, fmt.Errorf("%q: %q is not partition:offset", to, pair)
		}
		if _, dup := offsets[int32(p)]; dup {
			return Strategy{}, fmt.Errorf("%q: partition %d twice", to, p)
		}
		offsets[int32(p)] = o
	}
	return Offsets(offsets), nil
}

// ParsePartitions reads --partitions: comma-separated partition numbers
// ("0,3").
func ParsePartitions(s string) ([]int32, error) {
	var ps []int32
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32)
		if err != nil || p < 0 {
			return nil, fmt.Errorf("%q: %q is not a partition number", s, f)
		}
		if !slices.Contains(ps, int32(p)) {
			ps = append(ps, int32(p))
		}
	}
	return ps, nil
}

func formatPartitions(ps []int32) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// requested returns the offset s asks for on each partition it moves,
// before clamping to the log. rows are the topic's partitions.
func (s Strategy) requested(ctx context.Context, adm *kadm.Client, group, topic string, rows []Row, now time.Time) (map[int32]int64, error) {
	byPartition := make(map[int32]Row, len(rows))
	for _, r := range rows {
		byPartition[r.Partition] = r
	}
	var selected []Row
	switch s.kind {
	case explicit:
		return s.explicit(byPartition)
	case fromPlan:
		return s.plan.offsets(group, topic, byPartition)
	case invalid:
		return nil, fmt.Errorf("no reset strategy")
	case byDuration:
		if s.dur <= 0 {
			return nil, fmt.Errorf("--by-duration %s: want a positive duration", s.dur)
		}
	}
	if s.partitions == nil {
		selected = rows
	}
	for _, p := range s.partitions {
		r, ok := byPartition[p]
		if !ok {
			return nil, fmt.Errorf("the topic has no partition %d", p)
		}
		selected = append(selected, r)
	}
	out := make(map[int32]int64, len(selected))
	switch s.kind {
	case earliest:
		for _, r := range selected {
			out[r.Partition] = r.Start
		}
	case latest:
		for _, r := range selected {
			out[r.Partition] = r.End
		}
	case shiftBy:
		for _, r := range selected {
			if r.Committed < 0 {
				return nil, fmt.Errorf("partition %d: the group has no committed offset to shift", r.Partition)
			}
			out[r.Partition] = addClamped(r.Committed, s.shift)
		}
	case atTime, byDuration:
		at := s.at
		if s.kind == byDuration {
			at = now.Add(-s.dur)
		}
		listed, err := adm.ListOffsetsAfterMilli(ctx, at.UnixMilli(), topic)
		if err != nil {
			return nil, fmt.Errorf("list offsets at %s: %w", at.Format(time.RFC3339Nano), err)
		}
		for _, r := range selected {
			o, ok := listed.Lookup(topic, r.Partition)
			switch {
			case !ok:
				return nil, fmt.Errorf("list offsets at %s: no answer for partition %d", at.Format(time.RFC3339Nano), r.Partition)
			case o.Err != nil:
				return nil, fmt.Errorf("list offsets at %s: partition %d: %w", at.Format(time.RFC3339Nano), r.Partition, o.Err)
			case o.Offset < 0: // no record at or after at: the end, as kafka-consumer-groups falls back (kadm answers the end already; a -1 clamped would give the start)
				out[r.Partition] = r.End
			default:
				out[r.Partition] = o.Offset
			}
		}
	}
	return out, nil
}

// explicit checks Offsets' pairs against the log.
func (s Strategy) explicit(rows map[int32]Row) (map[int32]int64, error) {
	for p, o := range s.offsets {
		r, ok := rows[p]
		if !ok {
			return nil, fmt.Errorf("the topic has no partition %d", p)
		}
		if o < r.Start || o > r.End {
			return nil, fmt.Errorf("offset %d of partition %d is outside its log [%d, %d]", o, p, r.Start, r.End)
		}
	}
	return s.offsets, nil
}

// addClamped is a+b, saturating instead of overflowing.
func addClamped(a, b int64) int64 {
	switch {
	case b > 0 && a > math.MaxInt64-b:
		return math.MaxInt64
	case b < 0 && a < math.MinInt64-b:
		return math.MinInt64
	}
	return a + b
}
