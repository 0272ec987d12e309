package codec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"

	"github.com/linkedin/goavro/v2"
)

// flatRecord decodes a writer schema that is a flat record — every field a
// primitive, a logical primitive, a map or array of primitives, or a union
// of null and one of those — one field at a time, with goavro decoding
// each field's value.
//
// goavro's record codec returns a map of every field, and its union codec
// wraps each non-null optional value in a one-entry map: on the event
// schema that is 18 maps and ~9 KB of garbage a record, half of goavro's
// time and most of the decode's. Avro's binary record is only its fields'
// encodings one after the other, and a union only a long (the branch
// index) before the branch's encoding, so walking those two is all this
// does; every value is still goavro's. Any other shape (nested records,
// named types, other unions) keeps goavro's record codec.
type flatRecord struct {
	fields []flatField
}

type flatField struct {
	name  string
	codec *goavro.Codec // the value's codec: the field's type, or its union's non-null branch
	// reader is the index of the reader field of the same name, -1 when the
	// reader has none (decoded, then dropped, as goavro's map entry would be).
	reader int
	union  bool
	// null is the union's null branch (0 or 1); the other is the value's.
	null int64
}

// newFlatRecord returns the flat decoder of schema, a writer schema goavro
// accepted, or nil when schema is not a flat record.
func newFlatRecord(schema string) *flatRecord {
	dec := json.NewDecoder(bytes.NewReader([]byte(schema)))
	dec.UseNumber()
	var s map[string]any
	if err := dec.Decode(&s); err != nil || s["type"] != "record" {
		return nil
	}
	fs, ok := s["fields"].([]any)
	if !ok {
		return nil
	}
	r := &flatRecord{}
	for _, f := range fs {
		fm, ok := f.(map[string]any)
		if !ok {
			return nil
		}
		name, _ := fm["name"].(string)
		ff := flatField{name: name, reader: slices.Index(fieldNames[:], name)}
		t := fm["type"]
		if u, ok := t.([]any); ok {
			if len(u) != 2 || (u[0] != "null") == (u[1] != "null") {
				return nil // not [null, X] or [X, null]
			}
			ff.union = true
			if u[1] == "null" {
				ff.null, t = 1, u[0]
			} else {
				ff.null, t = 0, u[1]
			}
		}
		if !flatType(t) {
			return nil
		}
		spec, err := json.Marshal(t)
		if err != nil {
			return nil
		}
		if ff.codec, err = goavro.NewCodec(string(spec)); err != nil {
			return nil
		}
		r.fields = append(r.fields, ff)
	}
	return r
}

// primitive reports whether t is an Avro primitive type but null, which a
// flat field does not need on its own.
func primitive(t string) bool {
	switch t {
	case "boolean", "int", "long", "float", "double", "bytes", "string":
		return true
	}
	return false
}

// flatType reports whether t is a primitive, a logical type on a primitive,
// or a map or array of primitives: a type whose codec needs no name from
// elsewhere in the schema.
func flatType(t any) bool {
	switch x := t.(type) {
	case string:
		return primitive(x)
	case map[string]any:
		switch x["type"] {
		case "map":
			v, ok := x["values"].(string)
			return ok && primitive(v)
		case "array":
			v, ok := x["items"].(string)
			return ok && primitive(v)
		}
		p, ok := x["type"].(string)
		// A logical type on a primitive: {"type": "long", "logicalType":
		// "timestamp-millis"}; "decimal" needs its bytes, which a
		// strings-as-bytes schema never has, so it never reaches here.
		return ok && primitive(p)
	}
	return false
}

// decode fills ev from body, with the errors DecodeInto gives through
// goavro's record codec and fromNative: corrupt for any input goavro's
// record codec refuses, else fromNative's wrong_type and missing_field.
func (r *flatRecord) decode(body []byte, ev *Event) error {
	var vals [len(fieldNames)]any
	var present [len(fieldNames)]bool
	buf := body
	for i := range r.fields {
		f := &r.fields[i]
		var v any
		null := false
		if f.union {
			branch, n := binary.Varint(buf)
			if n <= 0 {
				return permanent("corrupt", ErrCorrupt, "field %q: cannot decode the union's branch", f.name)
			}
			buf = buf[n:]
			switch branch {
			case f.null:
				null = true
			case 1 - f.null:
			default:
				return permanent("corrupt", ErrCorrupt, "field %q: union branch %d of 2", f.name, branch)
			}
		}
		if !null {
			var err error
			if v, buf, err = f.codec.NativeFromBinary(buf); err != nil {
				return permanent("corrupt", ErrCorrupt, "field %q: %v", f.name, err)
			}
		}
		if f.reader >= 0 {
			vals[f.reader], present[f.reader] = v, true
		}
	}
	if len(buf) != 0 {
		return permanent("corrupt", ErrCorrupt, "%d bytes after the record", len(buf))
	}
	return fromFields(&vals, &present, ev)
}
