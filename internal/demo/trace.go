package demo

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// keyAttrs are the attributes the trace tree shows, in this order, when a
// span has them.
var keyAttrs = []attribute.Key{
	"messaging.destination.partition.id", "messaging.kafka.offset", "messaging.consumer.group.name",
	"atrelay.event_id", "atrelay.integration", "atrelay.events", "atrelay.outcome", "atrelay.reason",
	"http.request.resend_count", "http.response.status_code", "url.full", "error.type",
}

// eventTrace is the trace of one delivered event: the spans from the root
// of its trace (the producer's send span, in the demo) down to its process
// span, then, across the process span's links, each request that carried
// the event, with its attempts.
type eventTrace struct {
	path     []sdktrace.ReadOnlySpan // root first, the process span last
	spans    map[trace.SpanID]sdktrace.ReadOnlySpan
	children map[trace.SpanID][]sdktrace.ReadOnlySpan // oldest first
}

// newEventTrace picks, among spans, the delivered event of lowest
// partition and offset; nil when no delivered event was traced.
func newEventTrace(spans []sdktrace.ReadOnlySpan) *eventTrace {
	t := &eventTrace{spans: map[trace.SpanID]sdktrace.ReadOnlySpan{}, children: map[trace.SpanID][]sdktrace.ReadOnlySpan{}}
	var process sdktrace.ReadOnlySpan
	var best [2]int64 // partition, offset
	for _, s := range spans {
		t.spans[s.SpanContext().SpanID()] = s
		if s.Parent().IsValid() {
			t.children[s.Parent().SpanID()] = append(t.children[s.Parent().SpanID()], s)
		}
		if !strings.HasPrefix(s.Name(), "process ") || attr(s, "atrelay.outcome") != "delivered" {
			continue
		}
		p, _ := strconv.ParseInt(attr(s, "messaging.destination.partition.id"), 10, 64)
		o, _ := strconv.ParseInt(attr(s, "messaging.kafka.offset"), 10, 64)
		if at := [2]int64{p, o}; process == nil || at[0] < best[0] || (at[0] == best[0] && at[1] < best[1]) {
			process, best = s, at
		}
	}
	if process == nil {
		return nil
	}
	for _, c := range t.children {
		slices.SortFunc(c, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	}
	for s, ok := process, true; ok; s, ok = t.spans[s.Parent().SpanID()] {
		t.path = append(t.path, s)
		if !s.Parent().IsValid() {
			break
		}
	}
	slices.Reverse(t.path)
	return t
}

// print writes the trace as an indented tree: a span a line (name, kind,
// duration, start after the root's start), its key attributes on the line
// below.
func (t *eventTrace) print(w io.Writer) {
	fmt.Fprintf(w, "\n  the trace of one delivered event (trace %s):\n", t.path[0].SpanContext().TraceID())
	t.printSpan(w, t.path[0], "    ", "    ", "")
}

func (t *eventTrace) printSpan(w io.Writer, s sdktrace.ReadOnlySpan, first, rest, note string) {
	fmt.Fprintf(w, "%s%s  %s  %s (at +%s)%s\n", first, s.Name(), s.SpanKind(), duration(s.EndTime().Sub(s.StartTime())),
		duration(s.StartTime().Sub(t.path[0].StartTime())), note)
	below, notes := t.below(s)
	bar := "│  "
	if len(below) == 0 {
		bar = "   "
	}
	if a := keyAttributes(s); a != "" {
		fmt.Fprintf(w, "%s%s%s\n", rest, bar, a)
	}
	for i, b := range below {
		if i == len(below)-1 {
			t.printSpan(w, b, rest+"└─ ", rest+"   ", notes[i])
		} else {
			t.printSpan(w, b, rest+"├─ ", rest+"│  ", notes[i])
		}
	}
}

// below returns what the tree shows under s: the next span on the path to
// the event; under the process span, its children and the requests linked
// to it; under any other span, its children.
func (t *eventTrace) below(s sdktrace.ReadOnlySpan) (spans []sdktrace.ReadOnlySpan, notes []string) {
	id := s.SpanContext().SpanID()
	if i := slices.IndexFunc(t.path, func(p sdktrace.ReadOnlySpan) bool { return p.SpanContext().SpanID() == id }); i >= 0 && i < len(t.path)-1 {
		return t.path[i+1 : i+2], []string{""}
	}
	for _, c := range t.children[id] {
		spans, notes = append(spans, c), append(notes, "")
	}
	if id == t.path[len(t.path)-1].SpanContext().SpanID() {
		for _, l := range s.Links() {
			if r, ok := t.spans[l.SpanContext.SpanID()]; ok {
				spans, notes = append(spans, r), append(notes, "  (linked: the request's own trace "+r.SpanContext().TraceID().String()+")")
			}
		}
	}
	return spans, notes
}

// keyAttributes formats a span's key attributes.
func keyAttributes(s sdktrace.ReadOnlySpan) string {
	var parts []string
	for _, k := range keyAttrs {
		if v := attr(s, k); v != "" {
			parts = append(parts, string(k)+"="+v)
		}
	}
	return strings.Join(parts, " ")
}

func attr(s sdktrace.ReadOnlySpan, key attribute.Key) string {
	for _, a := range s.Attributes() {
		if a.Key == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// duration rounds d for reading: to 10 ms past a second, 10 µs past a
// millisecond, else to the microsecond.
func duration(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
