// Package groupoffsets shows and resets the consumer group's committed
// offsets (`atrelay offsets show|reset`): how operators watch lag and
// reprocess history, with kafka-consumer-groups' reset strategies.
package groupoffsets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Row is one partition's position.
type Row struct {
	Partition int32
	Committed int64 // -1 when the group has committed nothing
	Start     int64 // log start offset
	End       int64 // end offset (high watermark)
	// Target is the reset's new offset; -1 when the reset leaves the
	// partition alone (and in Show).
	Target int64
	// Requested is what the strategy asked for before it was clamped to
	// [Start, End]; equal to Target unless clamped.
	Requested int64
	// Member is the group member assigned the partition; nil when none is.
	Member *Member
}

// Member is a group member, as the group coordinator describes it.
type Member struct {
	ID       string // the member id the coordinator gave it
	ClientID string
	Host     string // as Kafka reports it: "/10.0.0.7"
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

// Status is the group's position on its topic.
type Status struct {
	Group, Topic string
	State        string // the group's state: Empty, Stable, PreparingRebalance, … ("Dead": no such group)
	Members      int
	Rows         []Row // by partition
	// Missing says the topic does not exist (ShowIfExists): Rows is empty.
	Missing bool
	// Parking, when set, is the parking consumer's position (group
	// <group>.park on the parking topic), written after the group's own.
	Parking *Status
}

// TotalLag is the sum of the partitions' lag.
func (s Status) TotalLag() int64 {
	var n int64
	for _, r := range s.Rows {
		n += r.Lag()
	}
	return n
}

// Show returns the group's position on each partition of topic, and which
// member owns each.
func Show(ctx context.Context, adm *kadm.Client, group, topic string) (Status, error) {
	st := Status{Group: group, Topic: topic}
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return st, fmt.Errorf("describe group %s: %w", group, err)
	}
	owners := map[int32]*Member{}
	st.State = "Dead"
	if g, ok := described[group]; ok {
		if g.Err != nil && !errors.Is(g.Err, kerr.GroupIDNotFound) {
			return st, fmt.Errorf("describe group %s: %w", group, g.Err)
		}
		if g.State != "" {
			st.State = g.State
		}
		st.Members = len(g.Members)
		for _, m := range g.Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok {
				continue
			}
			for _, t := range a.Topics {
				if t.Topic != topic {
					continue
				}
				for _, p := range t.Partitions {
					owners[p] = &Member{ID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost}
				}
			}
		}
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return st, fmt.Errorf("list start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return st, fmt.Errorf("list end offsets: %w", err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if errors.Is(err, kerr.GroupIDNotFound) { // a group that never committed (kfake says so; Kafka answers empty)
		committed, err = kadm.OffsetResponses{}, nil
	}
	if err != nil {
		return st, fmt.Errorf("fetch committed offsets of group %s: %w", group, err)
	}
	var errs []error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", o.Partition, o.Err))
			return
		}
		r := Row{Partition: o.Partition, End: o.Offset, Committed: -1, Target: -1, Requested: -1, Member: owners[o.Partition]}
		if s, ok := starts.Lookup(topic, o.Partition); ok {
			r.Start = s.Offset
		}
		if c, ok := committed.Lookup(topic, o.Partition); ok && c.Err == nil {
			r.Committed = c.At
		}
		st.Rows = append(st.Rows, r)
	})
	if len(st.Rows) == 0 && len(errs) == 0 {
		return st, fmt.Errorf("topic %s has no partitions (does it exist?)", topic)
	}
	slices.SortFunc(st.Rows, func(a, b Row) int { return int(a.Partition - b.Partition) })
	return st, errors.Join(errs...)
}

// ShowIfExists is Show for a topic that need not exist, the parking
// topic: a missing topic is a Status with Missing set, not an error.
func ShowIfExists(ctx context.Context, adm *kadm.Client, group, topic string) (Status, error) {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return Status{Group: group, Topic: topic}, fmt.Errorf("list topic %s: %w", topic, err)
	}
	if d, ok := details[topic]; !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return Status{Group: group, Topic: topic, Missing: true}, nil
	}
	return Show(ctx, adm, group, topic)
}

// ErrGroupActive is returned by Reset while the group has members: offsets
// reset under a running consumer would be overwritten by its next commit.
var ErrGroupActive = errors.New("the group has active members; stop every atrelay of the group first")

// Reset computes the group's new offsets on topic with s, clamped to each
// partition's log [start, end], and commits them when execute is true
// (otherwise it is a dry run). It refuses, dry run or not, while the group
// has members, as kafka-consumer-groups does. The rows it returns are the
// topic's partitions; Target is -1 on those s leaves alone.
func Reset(ctx context.Context, adm *kadm.Client, group, topic string, s Strategy, execute bool) ([]Row, error) {
	st, err := Show(ctx, adm, group, topic)
	if err != nil {
		return nil, err
	}
	if st.Members > 0 {
		return nil, fmt.Errorf("group %s (%s, %d members): %w", group, st.State, st.Members, ErrGroupActive)
	}
	rows := st.Rows
	requested, err := s.requested(ctx, adm, group, topic, rows, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	for i := range rows {
		if o, ok := requested[rows[i].Partition]; ok {
			rows[i].Requested = o
			rows[i].Target = min(max(o, rows[i].Start), rows[i].End)
		}
	}
	if execute {
		if err := Commit(ctx, adm, group, topic, rows); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// Commit commits the rows' targets (those not -1) as the group's offsets
// on topic: the second half of Reset, for a caller that does something
// with the plan before committing it. It checks again that the group has
// no members.
func Commit(ctx context.Context, adm *kadm.Client, group, topic string, rows []Row) error {
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return fmt.Errorf("describe group %s: %w", group, err)
	}
	if g, ok := described[group]; ok && len(g.Members) > 0 {
		return fmt.Errorf("group %s (%s, %d members): %w", group, g.State, len(g.Members), ErrGroupActive)
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
		return fmt.Errorf("commit offsets of group %s: %w", group, err)
	}
	return nil
}

// WriteText writes the status as a table, one partition a line, and the
// total lag; then, after a blank line, the parking consumer's the same way.
// A missing topic is one line saying so.
func (s Status) WriteText(w io.Writer) error {
	if s.Missing {
		fmt.Fprintf(w, "group %s, topic %s: the topic does not exist\n", s.Group, s.Topic)
	} else {
		fmt.Fprintf(w, "group %s (%s, %d members), topic %s\n", s.Group, s.State, s.Members, s.Topic)
		fmt.Fprintf(w, "%-9s %12s %12s %12s %12s  %-16s %s\n", "partition", "committed", "start", "end", "lag", "host", "member")
		for _, r := range s.Rows {
			host, member := "-", "-"
			if r.Member != nil {
				host, member = r.Member.Host, r.Member.ID
			}
			fmt.Fprintf(w, "%-9d %12s %12d %12d %12d  %-16s %s\n", r.Partition, committedText(r.Committed), r.Start, r.End, r.Lag(), host, member)
		}
		fmt.Fprintf(w, "total lag %d\n", s.TotalLag())
	}
	if s.Parking == nil {
		return nil
	}
	if _, err := fmt.Fprintln(w, "\nparking consumer:"); err != nil {
		return err
	}
	return s.Parking.WriteText(w)
}

// jsonStatus is Status as `offsets show --output json` prints it.
type jsonStatus struct {
	Group      string          `json:"group"`
	Topic      string          `json:"topic"`
	State      string          `json:"state"`
	Members    int             `json:"members"`
	TotalLag   int64           `json:"total_lag"`
	Partitions []jsonPartition `json:"partitions"`
	Missing    bool            `json:"missing,omitempty"`
	Parking    *jsonStatus     `json:"parking,omitempty"`
}

type jsonPartition struct {
	Partition int32  `json:"partition"`
	Committed *int64 `json:"committed"` // null: nothing committed
	Start     int64  `json:"start"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	// Member fields are null when no member owns the partition.
	MemberID *string `json:"member_id"`
	ClientID *string `json:"client_id"`
	Host     *string `json:"host"`
}

// WriteJSON writes the status as one JSON object: group, topic, state,
// members, total_lag, and per partition committed (null when nothing is),
// start, end, lag, member_id, client_id and host (null when no member owns
// it); "missing": true when the topic does not exist; and, when set,
// "parking": the parking consumer's status as an object of the same shape.
func (s Status) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s.json())
}

func (s Status) json() *jsonStatus {
	out := &jsonStatus{Group: s.Group, Topic: s.Topic, State: s.State, Members: s.Members, TotalLag: s.TotalLag(), Partitions: []jsonPartition{}, Missing: s.Missing}
	for _, r := range s.Rows {
		p := jsonPartition{Partition: r.Partition, Start: r.Start, End: r.End, Lag: r.Lag()}
		if r.Committed >= 0 {
			p.Committed = &r.Committed
		}
		if m := r.Member; m != nil {
			p.MemberID, p.ClientID, p.Host = &m.ID, &m.ClientID, &m.Host
		}
		out.Partitions = append(out.Partitions, p)
	}
	if s.Parking != nil {
		out.Parking = s.Parking.json()
	}
	return out
}

// PrintPlan writes a reset's rows as a table: each partition's committed
// offset, log, and new offset ("unchanged" when the reset leaves it alone;
// "(clamped from N)" when the strategy asked for an offset outside the log).
func PrintPlan(w io.Writer, rows []Row) {
	fmt.Fprintf(w, "%-9s %12s %12s %12s %12s\n", "partition", "committed", "start", "end", "new offset")
	for _, r := range rows {
		target := "unchanged"
		if r.Target >= 0 {
			target = strconv.FormatInt(r.Target, 10)
			if r.Requested != r.Target {
				target += " (clamped from " + strconv.FormatInt(r.Requested, 10) + ")"
			}
		}
		fmt.Fprintf(w, "%-9d %12s %12d %12d %12s\n", r.Partition, committedText(r.Committed), r.Start, r.End, target)
	}
}

func committedText(c int64) string {
	if c < 0 {
		return "-"
	}
	return strconv.FormatInt(c, 10)
}
