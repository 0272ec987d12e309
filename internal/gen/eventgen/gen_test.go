package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The go:generate line of codec/event.go, whose arguments this test repeats.
const directive = "//go:generate go run ../internal/gen/eventgen -schema ../schemas/subscription_event.avsc -out event_gen.go"

// TestGeneratedFileIsCurrent runs the generator in memory, as codec's
// go:generate line does, and compares with codec/event_gen.go on disk.
// Mutations caught: a field added to schemas/subscription_event.avsc without
// running go generate; event_gen.go edited by hand.
func TestGeneratedFileIsCurrent(t *testing.T) {
	event, err := os.ReadFile("../../../codec/event.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(event, []byte(directive+"\n")) {
		t.Fatalf("codec/event.go lacks %q: update this test with the directive", directive)
	}
	schema, err := os.ReadFile("../../../schemas/subscription_event.avsc")
	if err != nil {
		t.Fatal(err)
	}
	want, err := generate(schema, "../schemas/subscription_event.avsc", "codec")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../../codec/event_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("codec/event_gen.go is stale: run go generate ./codec (first difference at line %d)", firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

func schemaWith(fields string) []byte {
	return []byte(`{"type": "record", "name": "E", "namespace": "n", "fields": [` + fields + `]}`)
}

// TestUnsupportedShapesAreErrors: a field shape the decode helpers do not
// handle stops generation with its name, instead of generating a decoder
// that mis-reads it. Mutation caught: the ["null", T] union check in
// parseType relaxed to accept ["string", "null"].
func TestUnsupportedShapesAreErrors(t *testing.T) {
	tests := []struct {
		name, field, want string
	}{
		{"null second", `{"name": "x", "type": ["string", "null"], "default": "a"}`, `only ["null", T]`},
		{"three branches", `{"name": "x", "type": ["null", "string", "long"], "default": null}`, `only ["null", T]`},
		{"nullable int", `{"name": "x", "type": ["null", "int"], "default": null}`, "not supported"},
		{"enum", `{"name": "x", "type": {"type": "enum", "name": "K", "symbols": ["A"]}}`, "not supported"},
		{"array", `{"name": "x", "type": {"type": "array", "items": "string"}}`, "not supported"},
		{"map of longs", `{"name": "x", "type": {"type": "map", "values": "long"}}`, "only maps of strings"},
		{"nullable without null default", `{"name": "x", "type": ["null", "string"]}`, `needs "default": null`},
		{"time with a default", `{"name": "x_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}, "default": 0}`, "non-null default"},
		{"camelCase name", `{"name": "xValue", "type": "string"}`, "not a snake_case name"},
		{"same Go name", `{"name": "ab_test", "type": "string"}, {"name": "a_b_test", "type": "string"}`, "both Go field ABTest"},
		{"bad default", `{"name": "x", "type": "int", "default": "three"}`, "not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := generate(schemaWith(tt.field), "s.avsc", "p")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := generate([]byte(`{"type": "enum", "name": "E", "symbols": ["A"]}`), "s.avsc", "p"); err == nil {
		t.Fatal("generated from a schema that is not a record")
	}
}

// TestGeneratedShapes checks, on a small schema, what the codec's tests
// cannot see from one schema: the required bits' type grows with their
// count, non-zero defaults are written, and time is imported only when
// used. Mutation caught: BitType fixed to uint16.
func TestGeneratedShapes(t *testing.T) {
	var fields []string
	for i := range 17 {
		fields = append(fields, `{"name": "f`+string(rune('a'+i))+`", "type": "string"}`)
	}
	fields = append(fields, `{"name": "on", "type": "boolean", "default": true}`, `{"name": "n", "type": "long", "default": 7}`)
	src, err := generate(schemaWith(strings.Join(fields, ",")), "s.avsc", "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"var has uint32", "hasFa uint32 = 1 << iota", "*ev = Event{On: true, N: 7}", "N int64", "IntOf: func(ev *Event) int64 { return ev.N }"} {
		if !bytes.Contains(src, []byte(want)) {
			t.Errorf("generated code lacks %q:\n%s", want, src)
		}
	}
	if bytes.Contains(src, []byte(`import "time"`)) {
		t.Error("imports time without a time field")
	}
}

func TestGoName(t *testing.T) {
	for avro, want := range map[string]string{
		"event_id": "EventID", "api_version": "APIVersion", "ab_test_variant": "ABTestVariant",
		"event_created_at_ms": "EventCreatedAt", "cumulated_revenues_in_usd": "CumulatedRevenuesInUSD",
		"plan_price_in_customer_currency": "PlanPriceInCustomerCurrency", "a2b": "A2b",
		"Event": "", "event__id": "", "_x": "", "x-y": "",
	} {
		if got := goName(avro); got != want {
			t.Errorf("goName(%q) = %q, want %q", avro, got, want)
		}
	}
}

// TestRunWritesOnlyOnChange: go generate must not touch an up-to-date file,
// and writes nothing when the schema is not supported.
func TestRunWritesOnlyOnChange(t *testing.T) {
	dir := t.TempDir()
	schema, out := filepath.Join(dir, "s.avsc"), filepath.Join(dir, "gen.go")
	if err := os.WriteFile(schema, schemaWith(`{"name": "x", "type": "string"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(schema, out, "p"); err != nil {
		t.Fatal(err)
	}
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(out, past, past); err != nil {
		t.Fatal(err)
	}
	if err := run(schema, out, "p"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(out); err != nil || !fi.ModTime().Equal(past) {
		t.Fatalf("an up-to-date file was rewritten (%v)", err)
	}
	if err := os.WriteFile(out, []byte("sentinel"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(schema, schemaWith(`{"name": "x", "type": {"type": "array", "items": "string"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(schema, out, "p"); err == nil {
		t.Fatal("run accepted an unsupported schema")
	}
	if b, _ := os.ReadFile(out); string(b) != "sentinel" {
		t.Fatal("run wrote after an error")
	}
	if err := run("", out, "p"); err == nil {
		t.Fatal("run without -schema succeeded")
	}
}
