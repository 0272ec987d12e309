package groupoffsets

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Plan is a reset written down (--export) or read back (--from-file): the
// new offset of each partition it moves.
//
// As CSV it is kafka-consumer-groups' --export format: one line per
// partition, "topic,partition,offset", no header, a topic name longer than
// 24 characters in double quotes (Kafka's ConsumerGroupCommand writes it so
// for one group, and reads it back with --from-file); its four-column form "group,topic,partition,offset" (Kafka's,
// for several groups) is read too. As JSON (a file ending in .json):
//
//	{"group": "atrelay", "offsets": [{"topic": "events", "partition": 0, "offset": 120}]}
type Plan struct {
	// Group is the group the plan was made for; "" when the file does not
	// say (three-column CSV).
	Group   string       `json:"group,omitempty"`
	Offsets []PlanOffset `json:"offsets"`
}

// PlanOffset is one partition's new offset. Group is set only by the
// four-column CSV form, which may hold several groups.
type PlanOffset struct {
	Group     string `json:"-"`
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// PlanOf is the plan of a reset's rows: the partitions it moves.
func PlanOf(group, topic string, rows []Row) Plan {
	p := Plan{Group: group, Offsets: []PlanOffset{}}
	for _, r := range rows {
		if r.Target >= 0 {
			p.Offsets = append(p.Offsets, PlanOffset{Topic: topic, Partition: r.Partition, Offset: r.Target})
		}
	}
	return p
}

// WriteCSV writes p in kafka-consumer-groups' single-group export format,
// quoting as Kafka does (csvField).
func (p Plan) WriteCSV(w io.Writer) error {
	var b bytes.Buffer
	for _, o := range p.Offsets {
		fmt.Fprintf(&b, "%s,%d,%d\n", csvField(o.Topic), o.Partition, o.Offset)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// csvField quotes s as Jackson's CsvMapper, which Kafka's
// ConsumerGroupCommand exports with, does by default: a value longer than
// 24 characters, or holding a comma, a quote or a line break, or starting
// with #, is quoted, its quotes doubled. (Topic names are ASCII, so bytes
// are characters.)
func csvField(s string) string {
	if len(s) > 24 || strings.ContainsAny(s, ",\"\r\n") || strings.HasPrefix(s, "#") {
		return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
	}
	return s
}

// WriteJSON writes p as JSON, indented.
func (p Plan) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

// isJSON reports whether path names a JSON plan.
func isJSON(path string) bool { return strings.EqualFold(filepath.Ext(path), ".json") }

// WritePlanFile writes p to path: JSON when path ends in .json, else CSV.
func WritePlanFile(path string, p Plan) error {
	var b bytes.Buffer
	write := p.WriteCSV
	if isJSON(path) {
		write = p.WriteJSON
	}
	if err := write(&b); err != nil {
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("export the plan: %w", err)
	}
	return nil
}

// ReadPlanFile reads a plan written by WritePlanFile or by
// kafka-consumer-groups --export: JSON when path ends in .json, else CSV.
func ReadPlanFile(path string) (Plan, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Plan{}, fmt.Errorf("read the plan: %w", err)
	}
	var p Plan
	if isJSON(path) {
		p, err = ReadPlanJSON(bytes.NewReader(data))
	} else {
		p, err = ReadPlanCSV(bytes.NewReader(data))
	}
	if err != nil {
		return Plan{}, fmt.Errorf("plan %s: %w", path, err)
	}
	return p, nil
}

// ReadPlanCSV reads kafka-consumer-groups' export format: every line
// "topic,partition,offset", or every line "group,topic,partition,offset".
// Blank lines are skipped.
func ReadPlanCSV(r io.Reader) (Plan, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var p Plan
	columns := 0
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Plan{}, err
		}
		line, _ := cr.FieldPos(0)
		if columns == 0 {
			columns = len(rec)
		}
		if len(rec) != columns || (columns != 3 && columns != 4) {
			return Plan{}, fmt.Errorf("line %d: want topic,partition,offset (or group,topic,partition,offset on every line), got %d fields", line, len(rec))
		}
		var o PlanOffset
		if columns == 4 {
			o.Group, rec = rec[0], rec[1:]
		}
		o.Topic = rec[0]
		part, perr := strconv.ParseInt(rec[1], 10, 32)
		off, oerr := strconv.ParseInt(rec[2], 10, 64)
		if o.Topic == "" || perr != nil || oerr != nil || part < 0 || off < 0 {
			return Plan{}, fmt.Errorf("line %d: %q is not topic,partition,offset", line, strings.Join(rec, ","))
		}
		o.Partition, o.Offset = int32(part), off
		p.Offsets = append(p.Offsets, o)
	}
	if len(p.Offsets) == 0 {
		return Plan{}, errors.New("no offsets")
	}
	return p, nil
}

// ReadPlanJSON reads the JSON form; unknown keys are errors.
func ReadPlanJSON(r io.Reader) (Plan, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var p Plan
	if err := dec.Decode(&p); err != nil {
		return Plan{}, err
	}
	if len(p.Offsets) == 0 {
		return Plan{}, errors.New("no offsets")
	}
	for i, o := range p.Offsets {
		if o.Topic == "" || o.Partition < 0 || o.Offset < 0 {
			return Plan{}, fmt.Errorf("offsets[%d]: want a topic, a partition and an offset, none negative", i)
		}
	}
	return p, nil
}

// offsets returns the plan's offsets for group on topic, checked against
// the topic's partitions (rows).
func (p Plan) offsets(group, topic string, rows map[int32]Row) (map[int32]int64, error) {
	if p.Group != "" && p.Group != group {
		return nil, fmt.Errorf("the plan is for group %s, not %s", p.Group, group)
	}
	out := map[int32]int64{}
	groups := map[string]bool{}
	for _, o := range p.Offsets {
		if o.Group != "" && o.Group != group {
			groups[o.Group] = true
			continue
		}
		if o.Topic != topic {
			return nil, fmt.Errorf("the plan moves topic %s; the group's topic is %s", o.Topic, topic)
		}
		if _, ok := rows[o.Partition]; !ok {
			return nil, fmt.Errorf("the plan names partition %d; the topic has no such partition", o.Partition)
		}
		if _, dup := out[o.Partition]; dup {
			return nil, fmt.Errorf("the plan names partition %d twice", o.Partition)
		}
		out[o.Partition] = o.Offset
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the plan has no offsets for group %s (it has %s)", group, strings.Join(slices.Sorted(maps.Keys(groups)), ", "))
	}
	return out, nil
}
