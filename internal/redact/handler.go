package redact

import (
	"context"
	"fmt"
	"log/slog"
)

// Handler returns a slog.Handler that passes every record to h with URL
// userinfo redacted by String: in the message, and in attribute values that
// are strings, errors (still errors, wrapped by Error) or fmt.Stringers
// (then logged as strings), inside groups and after resolving LogValuers.
// Attributes given to WithAttrs are redacted once, there.
//
// It is defence in depth: the code that forms a message is the first place
// to redact. A record that needs nothing is passed on as is, without
// allocating, when its string values lack an '@' or a "://"; error and
// Stringer values cost the Error or String call that the handler below makes
// anyway. Handler is safe for concurrent use if h is.
func Handler(h slog.Handler) slog.Handler { return &handler{next: h} }

var _ slog.Handler = (*handler)(nil)

type handler struct{ next slog.Handler }

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	dirty := Needed(r.Message)
	if !dirty {
		r.Attrs(func(a slog.Attr) bool {
			dirty = valueNeeds(a.Value)
			return !dirty
		})
	}
	if !dirty {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = attr(a)
	}
	return &handler{next: h.next.WithAttrs(red)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name)}
}

// valueNeeds reports whether redacting v would change it.
func valueNeeds(v slog.Value) bool {
	switch v.Kind() {
	case slog.KindString:
		return Needed(v.String())
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return Needed(x.Error())
		case fmt.Stringer:
			return Needed(x.String())
		}
	case slog.KindGroup:
		for _, a := range v.Group() {
			if valueNeeds(a.Value) {
				return true
			}
		}
	case slog.KindLogValuer:
		return valueNeeds(v.Resolve())
	}
	return false
}

// attr returns a with its value redacted.
func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		if s := v.String(); Needed(s) {
			return slog.String(a.Key, String(s))
		}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.Any(a.Key, Error(x))
		case fmt.Stringer:
			if s := x.String(); Needed(s) {
				return slog.String(a.Key, String(s))
			}
		}
	case slog.KindGroup:
		g := v.Group()
		red := make([]slog.Attr, len(g))
		for i, ga := range g {
			red[i] = attr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
