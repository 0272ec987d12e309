package codec

import (
	"bytes"
	"encoding/json"
	"unsafe"

	"github.com/linkedin/goavro/v2"
)

// writerCodec is the goavro codec that decodes one writer schema.
//
// goavro reads an Avro string as a slice of the value, then copies it into
// a new string and boxes that: three allocations per string field, and an
// event has about twenty-five. Avro's bytes have the same binary encoding as
// its strings, and goavro hands them back as the slice itself (one
// allocation, the box). So when a writer schema has no bytes type of its
// own, its codec is built from the schema with every string spelled bytes:
// DecodeInto copies the value once, and the event's strings point into that
// copy (a string never aliases the Kafka record: a buffered event must not
// pin the fetched batch). A writer schema that already has bytes keeps the
// plain codec, since its bytes and strings could not be told apart.
type writerCodec struct {
	codec *goavro.Codec
	// stringsAsBytes is true when codec reads every string as bytes.
	stringsAsBytes bool
	// flat, when the strings-as-bytes schema is a flat record, decodes it
	// field by field instead of codec (flat.go).
	flat *flatRecord
	// rabin is the fingerprint of the writer schema as written: the
	// single-object key, which the rewritten schema does not share.
	rabin uint64
}

// newWriterCodec builds the codec of a writer schema. The error is
// goavro's for the schema as written.
func newWriterCodec(schema string) (*writerCodec, error) {
	plain, err := goavro.NewCodec(schema)
	if err != nil {
		return nil, err
	}
	wc := &writerCodec{codec: plain, rabin: plain.Rabin}
	if fast, ok := stringsAsBytes(schema); ok {
		// goavro accepted the schema as written; the rewritten one differs
		// only in the spelling of string, so a failure here keeps the plain
		// codec rather than refusing a valid schema.
		if c, err := goavro.NewCodec(fast); err == nil {
			wc.codec, wc.stringsAsBytes = c, true
			wc.flat = newFlatRecord(fast)
		}
	}
	return wc, nil
}

// stringsAsBytes returns schema with every string type spelled bytes, and
// false when it cannot: the schema has bytes already (or a decimal, which
// is bytes), or it is not JSON.
func stringsAsBytes(schema string) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader([]byte(schema)))
	dec.UseNumber() // defaults keep every digit
	var s any
	if err := dec.Decode(&s); err != nil {
		return "", false
	}
	s, ok := respell(s)
	if !ok {
		return "", false
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// respell rewrites the string types of a schema in place; false when it
// meets bytes. Only type positions are looked at — a field or a record
// named "string" keeps its name.
func respell(t any) (any, bool) {
	switch x := t.(type) {
	case string:
		switch x {
		case "string":
			return "bytes", true
		case "bytes":
			return nil, false
		}
		return x, true
	case []any: // a union
		for i := range x {
			var ok bool
			if x[i], ok = respell(x[i]); !ok {
				return nil, false
			}
		}
		return x, true
	case map[string]any:
		key := "type"
		switch x["type"] {
		case "record", "error":
			fields, _ := x["fields"].([]any)
			for _, f := range fields {
				fm, ok := f.(map[string]any)
				if !ok {
					return nil, false
				}
				if fm["type"], ok = respell(fm["type"]); !ok {
					return nil, false
				}
			}
			return x, true
		case "enum", "fixed":
			return x, true
		case "array":
			key = "items"
		case "map":
			key = "values"
		}
		var ok bool
		x[key], ok = respell(x[key])
		return x, ok
	}
	return nil, false
}

// bytesString returns b as a string without copying it. b must be part of
// DecodeInto's private copy of the value, which nothing writes after the
// decode, so the string never changes.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// rejectBytes keeps a plain codec's events and errors as they always
// were: there a bytes value is a real Avro bytes, which no field of the
// reader schema accepts, while fromNative's helpers take bytes for strings.
// It returns the wrong_type error of the first reader field, in schema
// order, that holds bytes, or of a map field with a bytes value. (When a
// record has other wrong fields too, this one is reported first.)
func rejectBytes(m map[string]any) error {
	for i := range fields {
		name := fields[i].Name
		v, ok := m[name]
		if !ok {
			continue
		}
		if fields[i].Kind != KindMap {
			if x, isBytes := unwrap(v).([]byte); isBytes {
				return permanent("wrong_type", ErrWrongType, "%s: %T", name, x)
			}
			continue
		}
		// As attributes reads it: a union's {"map": {...}}, or the map.
		if u, ok := v.(map[string]any); ok && len(u) == 1 {
			if inner, ok := u["map"].(map[string]any); ok {
				v = inner
			}
		}
		switch x := v.(type) {
		case []byte:
			return permanent("wrong_type", ErrWrongType, "%s: %T", name, x)
		case map[string]any:
			for k, a := range x {
				if b, isBytes := a.([]byte); isBytes {
					return permanent("wrong_type", ErrWrongType, "%s: %T", name+"."+k, b)
				}
			}
		}
	}
	return nil
}
