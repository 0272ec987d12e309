// Package groupoffsets shows and resets the consumer group's committed
// offsets (`atrelay offsets show|reset`): how operators watch lag and
// reprocess history.
package groupoffsets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Row is one partition's position.
type Row struct {
	Partition int32
	Committed int64 // -1 when the group has committed nothing
	Start     int64 // log start offset
	End       int64 // end offset (high watermark)
	Target    int64 // the reset target, for Reset
}

// Lag is what is left to consume: from the committed offset, or from the
// log start when nothing is committed.
func (r Row) Lag() int64 {
	from := r.Committed
	if from < 0 {
		from = r.Start
	}
	return max(0, r.End-from)
}

// Show returns the group's position on each partition of topic.
func Show(ctx context.Context, adm *kadm.Client, group, topic string) ([]Row, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("fetch committed offsets of group %s: %w", group, err)
	}
	var rows []Row
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", o.Partition, o.Err))
			return
		}
		r := Row{Partition: o.Partition, End: o.Offset, Committed: -1, Target: -1}
		if s, ok := starts.Lookup(topic, o.Partition); ok {
			r.Start = s.Offset
		}
		if c, ok := committed.Lookup(topic, o.Partition); ok && c.Err == nil {
			r.Committed = c.At
		}
		rows = append(rows, r)
	})
	if len(rows) == 0 && len(errs) == 0 {
		return nil, fmt.Errorf("topic %s has no partitions (does it exist?)", topic)
	}
	slices.SortFunc(rows, func(a, b Row) int { return int(a.Partition - b.Partition) })
	return rows, errors.Join(errs...)
}

// ErrGroupActive is returned by Reset while the group has members: offsets
// reset under a running consumer would be overwritten by its next commit.
var ErrGroupActive = errors.New("the group has active members; stop every atrelay of the group first")

// Reset computes the new offsets for to — earliest, latest, an RFC 3339
// time, or explicit partition:offset pairs ("0:120,3:0") — and commits them
// when execute is true. It refuses while the group has members.
func Reset(ctx context.Context, adm *kadm.Client, group, topic, to string, execute bool) ([]Row, error) {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describe group %s: %w", group, err)
	}
	if g, ok := described[group]; ok && len(g.Members) > 0 {
		return nil, fmt.Errorf("group %s (%s, %d members): %w", group, g.State, len(g.Members), ErrGroupActive)
	}
	rows, err := Show(ctx, adm, group, topic)
	if err != nil {
		return nil, err
	}
	var target kadm.ListedOffsets
	switch {
	case to == "earliest":
		target, err = adm.ListStartOffsets(ctx, topic)
	case to == "latest":
		target, err = adm.ListEndOffsets(ctx, topic)
	case strings.Contains(to, ":") && !strings.Contains(to, "T"):
		err = explicit(rows, to)
	default:
		var t time.Time
		if t, err = time.Parse(time.RFC3339, to); err != nil {
			return nil, fmt.Errorf("--to %q: want earliest, latest, an RFC 3339 time or partition:offset pairs", to)
		}
		target, err = adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), topic)
	}
	if err != nil {
		return nil, err
	}
	for i := range rows {
		if o, ok := target.Lookup(topic, rows[i].Partition); ok {
			rows[i].Target = o.Offset
			if rows[i].Target < 0 { // no record after that time: the end
				rows[i].Target = rows[i].End
			}
		}
	}
	if !execute {
		return rows, nil
	}
	offs := kadm.Offsets{}
	for _, r := range rows {
		if r.Target >= 0 {
			offs.Add(kadm.Offset{Topic: topic, Partition: r.Partition, At: r.Target, LeaderEpoch: -1})
		}
	}
	resp, err := adm.CommitOffsets(ctx, group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	return rows, nil
}

// explicit sets Target from "partition:offset,..." pairs.
func explicit(rows []Row, to string) error {
	for _, pair := range strings.Split(to, ",") {
		ps, os, ok := strings.Cut(strings.TrimSpace(pair), ":")
		p, perr := strconv.ParseInt(ps, 10, 32)
		o, oerr := strconv.ParseInt(os, 10, 64)
		if !ok || perr != nil || oerr != nil || o < 0 {
			return fmt.Errorf("--to %q: %q is not partition:offset", to, pair)
		}
		i := slices.IndexFunc(rows, func(r Row) bool { return r.Partition == int32(p) })
		if i < 0 {
			return fmt.Errorf("--to %q: the topic has no partition %d", to, p)
		}
		if o < rows[i].Start || o > rows[i].End {
			return fmt.Errorf("--to %q: offset %d of partition %d is outside [%d, %d]", to, o, p, rows[i].Start, rows[i].End)
		}
		rows[i].Target = o
	}
	return nil
}

// Print writes rows as a table; with targets, the reset's plan.
func Print(w io.Writer, rows []Row, targets bool) {
	if targets {
		fmt.Fprintf(w, "%-9s %12s %12s %12s %12s\n", "partition", "committed", "start", "end", "new offset")
	} else {
		fmt.Fprintf(w, "%-9s %12s %12s %12s %12s\n", "partition", "committed", "start", "end", "lag")
	}
	var lag int64
	for _, r := range rows {
		committed := strconv.FormatInt(r.Committed, 10)
		if r.Committed < 0 {
			committed = "-"
		}
		last := strconv.FormatInt(r.Lag(), 10)
		if targets {
			last = "unchanged"
			if r.Target >= 0 {
				last = strconv.FormatInt(r.Target, 10)
			}
		}
		lag += r.Lag()
		fmt.Fprintf(w, "%-9d %12s %12d %12d %12s\n", r.Partition, committed, r.Start, r.End, last)
	}
	if !targets {
		fmt.Fprintf(w, "total lag %d\n", lag)
	}
}
