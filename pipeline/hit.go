package pipeline

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/trace"

	"github.com/atrelay/atrelay/codec"
)

// Hit is one event on its way to Piano: the decoded Purchasely event and what
// Map and the stages made of it. A Hit is owned by one goroutine at a time:
// the worker mapping it, then the batcher, then the sink, then whoever
// settles it.
type Hit struct {
	// Event is the decoded input. Map and the stages read it and never
	// modify it.
	Event *codec.Event
	// Origin is where the hit comes from (the service's record); sinks use
	// it only to link their spans to the record's. nil when the hit has no
	// origin (a test, send-test).
	Origin Origin

	// Site is the Piano site the event goes to; set by Map.
	Site *Site
	// Name is the Piano event name; set by Map.
	Name string
	// IDClient is the Piano visitor id (the request's idclient); set by Map.
	IDClient string
	// Props are the event's properties in the order they are sent; set by
	// Map, which reuses their capacity.
	Props []Prop
	// Body is the hit's encoded JSON object ({"name":…,"data":{…}}), written
	// by the service's encoder (atinternet.Encode) once the stages are done.
	// Batches are sized by len(Body).
	Body []byte
}

// Origin is what a hit knows of where it came from: the span context of the
// work that produced it (the zero SpanContext when that work is not
// traced), so that a sink can link its request's span to it.
type Origin interface {
	SpanContext() trace.SpanContext
}

// RequestLinker is what an Origin may also be: a sink that traces its
// requests tells it the span context of each request that carries its hit
// (the request's span links to the origin's, and the origin's back to the
// request's).
type RequestLinker interface {
	LinkRequest(trace.SpanContext)
}

// Reset clears h for reuse, keeping its slices' capacity.
func (h *Hit) Reset() {
	props, body := h.Props[:0], h.Body[:0]
	*h = Hit{Props: props, Body: body}
}

// Site is one Piano Analytics site: where an integration's hits are sent.
// Sites are built once from the configuration and shared read-only.
type Site struct {
	// Integration is the configured integration's name.
	Integration string
	// ID is the numeric site id (the request's s parameter).
	ID int64
	// Endpoint is the collect URL without its query: scheme, host and path.
	Endpoint string
	// OnReject is what the service does with the events the site rejects;
	// "" means RejectPause.
	OnReject RejectPolicy
}

// Kind is the type of a property value.
type Kind uint8

// The property value types Piano accepts.
const (
	KindString Kind = iota
	KindInt
	KindFloat
	KindBool
)

// Value is a property value. Only the field of its Kind is meaningful; it is
// a plain struct so that building properties allocates nothing.
type Value struct {
	Kind  Kind
	Str   string
	Int   int64
	Float float64
	Bool  bool
}

// String returns a string Value.
func String(s string) Value { return Value{Kind: KindString, Str: s} }

// Int returns an integer Value.
func Int(i int64) Value { return Value{Kind: KindInt, Int: i} }

// Float returns a decimal Value.
func Float(f float64) Value { return Value{Kind: KindFloat, Float: f} }

// Bool returns a boolean Value.
func Bool(b bool) Value { return Value{Kind: KindBool, Bool: b} }

// Prop is one property of a hit.
type Prop struct {
	Key   string
	Value Value
}

// Request is what one HTTP request to a collect server carries: events of one
// visitor on one site, at most piano.MaxEventsPerRequest, in event order.
type Request struct {
	Site     *Site
	IDClient string
	Hits     []*Hit
}

// Stage is a custom step run after Map (deduplication, an enricher): it
// reads and completes h in place. A stage depends only on the hit, never on
// another stage.
//
// A nil error means h goes on to the next stage. An error matching a *Dropped
// (errors.As) means the event was filtered on purpose: it is settled, not
// failed, and counted by the Dropped's Reason. Any other error is a failure of
// this event that retrying will not fix: the event goes to the dead-letter topic.
//
// Stages must be safe for concurrent use by several goroutines, each with its
// own Hit.
type Stage interface {
	Process(ctx context.Context, h *Hit) error
}

// StageFunc adapts a function to a Stage.
type StageFunc func(ctx context.Context, h *Hit) error

// Process calls f(ctx, h).
func (f StageFunc) Process(ctx context.Context, h *Hit) error { return f(ctx, h) }

// Middleware wraps a stage with a cross-cutting concern (tracing, recovery)
// without touching the stage's code. It sees the stage and the hit, nothing
// else: what Map adjusted is in the Report that Chain.Process returns.
type Middleware func(next Stage) Stage

// Dropped is the error Route, Map or a stage returns for an event it filters
// on purpose. The drop reasons below are values, so returning one allocates
// nothing; compare them with errors.Is.
type Dropped struct {
	Reason string
}

func (d *Dropped) Error() string { return "dropped: " + d.Reason }

// The reasons an event is filtered. Each is a metric label value.
var (
	ErrNoIntegration       = &Dropped{Reason: "no_integration"}
	ErrIntegrationDisabled = &Dropped{Reason: "integration_disabled"}
	ErrEventNotEnabled     = &Dropped{Reason: "event_not_enabled"}
	ErrEnvironmentDisabled = &Dropped{Reason: "environment_not_enabled"}
	ErrNoIDClient          = &Dropped{Reason: "no_idclient"}
)

// DropReason returns the reason of a filtered event's error and true, or ""
// and false when err is not a drop.
func DropReason(err error) (string, bool) {
	var d *Dropped
	if errors.As(err, &d) {
		return d.Reason, true
	}
	return "", false
}

// Chain is the one path of an event through this package: Route, Map, then
// the custom stages in order. Build it once with NewChain; it is read-only
// and safe for concurrent use.
type Chain struct {
	in     *Integrations
	stages []Stage // each already wrapped by the middlewares
}

// NewChain returns the chain of the integrations, with stages run in order
// after Map, each wrapped by mws (the first middleware outermost). The
// integrations' routing and mapping are not stages: no middleware wraps them.
func NewChain(in *Integrations, stages []Stage, mws ...Middleware) *Chain {
	c := &Chain{in: in, stages: make([]Stage, len(stages))}
	for i, st := range stages {
		for j := len(mws) - 1; j >= 0; j-- {
			st = mws[j](st)
		}
		c.stages[i] = st
	}
	return c
}

// Process routes h.Event to its integration, maps it into h, then runs the
// stages, stopping at the first error: a *Dropped (the event is filtered) or
// a failure (see Stage). The Report is Map's, zero when the event was not
// mapped; it is returned with a stage's error too, since Map adjusted those
// values all the same. Once it returns nil, h is ready to encode.
func (c *Chain) Process(ctx context.Context, h *Hit) (Report, error) {
	r, err := c.in.Route(h.Event)
	if err != nil {
		return Report{}, err
	}
	rep, err := r.Map(h.Event, h)
	if err != nil {
		return rep, err
	}
	for _, s := range c.stages {
		if err := s.Process(ctx, h); err != nil {
			return rep, err
		}
	}
	return rep, nil
}
