package pipeline

import (
	"context"
	"errors"

	"github.com/atrelay/atrelay/codec"
)

// Hit is one event on its way to Piano: the decoded Purchasely event and what
// the stages decided about it. A Hit is owned by one goroutine at a time: the
// stage running it, then the batcher, then the sink, then whoever settles it.
type Hit struct {
	// Event is the decoded input. Stages read it and never modify it.
	Event *codec.Event
	// Ref is the caller's handle on the record the event came from (its
	// partition and offset, for settlement); stages and sinks never read it.
	Ref any

	// Site is the Piano site the event goes to; set by the filter stage.
	Site *Site
	// Name is the Piano event name; set by the rename stage.
	Name string
	// IDClient is the Piano visitor id (the request's idclient); set by enrich.
	IDClient string
	// Props are the event's properties in the order they are sent; set by enrich.
	Props []Prop
	// Truncated counts the string values enrich cut to piano.MaxStringLen.
	Truncated int
	// OutOfRange counts the decimals enrich left out for exceeding ±1e15.
	OutOfRange int
	// route is the compiled integration the filter chose.
	route *route
	// Body is the hit's encoded JSON object ({"name":…,"data":{…}}); set by
	// the sink's encoder, the last stage. Batches are sized by len(Body).
	Body []byte
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

// Stage is one step of the pipeline. It reads and completes h in place.
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

// Middleware wraps a stage with a cross-cutting concern (tracing, metrics,
// recovery) without touching the stage's code.
type Middleware func(name string, next Stage) Stage

// Dropped is the error a stage returns for an event it filters on purpose.
// The drop reasons below are values, so returning one allocates nothing;
// compare them with errors.Is.
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

// Chain runs stages in order, each wrapped by the middlewares (the first
// middleware outermost). It stops at the first error.
func Chain(stages []Named, mws ...Middleware) Stage {
	wrapped := make([]Stage, len(stages))
	for i, s := range stages {
		st := s.Stage
		for j := len(mws) - 1; j >= 0; j-- {
			st = mws[j](s.Name, st)
		}
		wrapped[i] = st
	}
	return StageFunc(func(ctx context.Context, h *Hit) error {
		for _, s := range wrapped {
			if err := s.Process(ctx, h); err != nil {
				return err
			}
		}
		return nil
	})
}

// Named is a stage with the name middlewares report it under.
type Named struct {
	Name  string
	Stage Stage
}
