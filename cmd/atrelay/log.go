package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/atrelay/atrelay/internal/redact"
	"github.com/atrelay/atrelay/internal/telemetry"
)

// levels are the values of --log-level.
var levels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// newLogger logs JSON in production and text in a terminal ("auto"), at
// level and above. Every package logs through it, so what it does here
// holds for every log line: durations read as Go durations ("1.5s", not
// nanoseconds), a URL with credentials never appears, and a line logged
// with a context that carries a span (a record's, a collect request's)
// has its trace_id and span_id.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, ok := levels[level]
	if !ok {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationString}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want json, text or auto", format)
	}
	// redact.Handler: a URL with credentials (a registry written as
	// https://user:key@host) never reaches the log, whoever logs it.
	// telemetry.TraceHandler: trace_id and span_id from the context.
	return slog.New(telemetry.TraceHandler(redact.Handler(h))), nil
}

// durationString writes a time.Duration as Go writes it ("1.5s"); the
// JSON handler would write nanoseconds.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}
