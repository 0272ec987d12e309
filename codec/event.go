package codec

import (
	"fmt"
	"slices"
	"time"
)

// Event, the decoder's field list and required set, fromNative, Native and
// the Fields table are generated from the schema: a field is declared once,
// in schemas/subscription_event.avsc.
//
//go:generate go run ../internal/gen/eventgen -schema ../schemas/subscription_event.avsc -out event_gen.go

// Null is an optional value: Valid is false when the record held Avro null
// or when its writer schema did not have the field.
type Null[T any] struct {
	Value T
	Valid bool
}

// Some returns a valid Null holding v.
func Some[T any](v T) Null[T] { return Null[T]{Value: v, Valid: true} }

// String returns a short description of the event for logs.
func (ev *Event) String() string {
	return fmt.Sprintf("%s %s app=%s env=%s", ev.EventID, ev.EventName, ev.AppID, ev.Environment)
}

// Kind is the Go shape of an Event field, and so which FieldInfo accessor
// reads it.
type Kind uint8

// The kinds of Event fields.
const (
	KindString Kind = iota + 1 // string; "" when null; read with StringOf
	KindInt                    // int32 or int64; read with IntOf
	KindBool                   // bool; read with BoolOf
	KindDouble                 // Null[float64]; read with DoubleOf
	KindTime                   // time.Time or Null[time.Time], in UTC; read with TimeOf
	KindMap                    // map[string]string; read with MapOf
)

var kindNames = [...]string{KindString: "string", KindInt: "int", KindBool: "bool", KindDouble: "double", KindTime: "time", KindMap: "map"}

// String returns the kind's lowercase name, e.g. "time".
func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// FieldInfo describes one field of the event schema. Exactly the accessor
// matching Kind is set, the others are nil; accessors only read the event,
// do not allocate, and are safe for concurrent use.
type FieldInfo struct {
	// Name is the Avro field name, e.g. "purchased_at_ms".
	Name string
	// GoName is the Event field holding it, e.g. "PurchasedAt".
	GoName string
	// Kind says which accessor is set.
	Kind Kind
	// Required is true when the reader schema has no default: a record
	// without the field is dead-lettered as missing_field.
	Required bool
	// Nullable is true for a ["null", T] union: null and absent both
	// decode as "" or an invalid Null.
	Nullable bool
	// Doc is the schema's doc of the field, "" when it has none.
	Doc string

	StringOf func(*Event) string            // KindString
	IntOf    func(*Event) int64             // KindInt
	BoolOf   func(*Event) bool              // KindBool
	DoubleOf func(*Event) Null[float64]     // KindDouble
	TimeOf   func(*Event) Null[time.Time]   // KindTime; always Valid for a required time
	MapOf    func(*Event) map[string]string // KindMap
}

// Fields returns the event schema's fields, in schema order. The slice is
// the caller's to keep or modify.
func Fields() []FieldInfo { return slices.Clone(fields[:]) }
