package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/format"
	"strconv"
	"strings"
	"text/template"
)

// The Kind constants of package codec, by the name generate uses.
const (
	kindString = "KindString"
	kindInt    = "KindInt"
	kindBool   = "KindBool"
	kindDouble = "KindDouble"
	kindTime   = "KindTime"
	kindMap    = "KindMap"
)

// field is one schema field with everything the template writes about it.
type field struct {
	Name     string // Avro name
	GoName   string // Event field
	Comment  string // doc comment of the Event field, without "// "
	Doc      string // the schema's doc
	Kind     string // one of the kind* constants
	GoType   string
	Nullable bool
	Required bool
	Bit      string // has<GoName> when Required
	Default  string // Go literal of the reader default; "" for the zero value
	Decode   string // statements of its fromNative case
	Native   string // expression of its Native map entry
	Accessor string // FieldInfo accessor assignment, e.g. StringOf: func...
}

type model struct {
	Source   string
	Package  string
	Record   string // full name, namespace.name
	Fields   []field
	Required []field
	BitType  string
	Defaults string // keyed Event literal body of the non-zero defaults
	UsesTime bool   // a field is a timestamp, so the file imports time
}

// avroField is a field as the schema's JSON has it.
type avroField struct {
	Name    string          `json:"name"`
	Type    json.RawMessage `json:"type"`
	Default json.RawMessage `json:"default"` // nil when absent, "null" when null
	Doc     string          `json:"doc"`
}

type avroRecord struct {
	Type      string      `json:"type"`
	Name      string      `json:"name"`
	Namespace string      `json:"namespace"`
	Fields    []avroField `json:"fields"`
}

// avroType is a non-union type: a primitive name, or an object with a
// logical type or map values.
type avroType struct {
	Type        string          `json:"type"`
	LogicalType string          `json:"logicalType"`
	Values      json.RawMessage `json:"values"`
}

// generate returns the gofmt-ed Go source for a record schema. source names
// the schema in the file's header.
func generate(schema []byte, source, pkg string) ([]byte, error) {
	var rec avroRecord
	if err := json.Unmarshal(schema, &rec); err != nil {
		return nil, fmt.Errorf("not a JSON schema: %w", err)
	}
	if rec.Type != "record" || len(rec.Fields) == 0 {
		return nil, errors.New("not a record schema with fields")
	}
	m := model{Source: source, Package: pkg, Record: rec.Name}
	if rec.Namespace != "" {
		m.Record = rec.Namespace + "." + rec.Name
	}
	seen := map[string]string{}
	var defaults []string
	for _, af := range rec.Fields {
		f, err := newField(af)
		if err != nil {
			return nil, fmt.Errorf("field %q: %w", af.Name, err)
		}
		if other, dup := seen[f.GoName]; dup {
			return nil, fmt.Errorf("fields %q and %q are both Go field %s", other, f.Name, f.GoName)
		}
		seen[f.GoName] = f.Name
		if f.Required {
			m.Required = append(m.Required, f)
		}
		if f.Default != "" {
			defaults = append(defaults, f.GoName+": "+f.Default)
		}
		m.UsesTime = m.UsesTime || f.Kind == kindTime
		m.Fields = append(m.Fields, f)
	}
	switch n := len(m.Required); {
	case n <= 16:
		m.BitType = "uint16"
	case n <= 32:
		m.BitType = "uint32"
	case n <= 64:
		m.BitType = "uint64"
	default:
		return nil, fmt.Errorf("%d required fields: at most 64", n)
	}
	m.Defaults = strings.Join(defaults, ", ")
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, m); err != nil {
		return nil, err
	}
	src, err := format.Source(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("generated code does not parse: %w\n%s", err, buf.Bytes())
	}
	return src, nil
}

// newField types one field. Only the shapes the codec's decode helpers
// handle are accepted; anything else is an error naming the shape, so that
// a new kind of field is a decision, not a silent mis-decode.
func newField(af avroField) (field, error) {
	f := field{Name: af.Name, GoName: goName(af.Name), Doc: af.Doc}
	if f.GoName == "" {
		return f, errors.New("not a snake_case name")
	}
	t, nullable, err := parseType(af.Type)
	if err != nil {
		return f, err
	}
	f.Nullable = nullable
	f.Required = af.Default == nil
	if f.Required {
		f.Bit = "has" + f.GoName
	}
	if nullable && string(af.Default) != "null" {
		return f, errors.New(`a ["null", T] union needs "default": null`)
	}
	k := strconv.Quote(f.Name)
	var null string // how the comment says null decodes
	switch {
	case t.Type == "string":
		f.Kind, f.GoType = kindString, "string"
		f.Decode = "ev." + f.GoName + ", err = str(k, v)"
		f.Native, null = "ev."+f.GoName, `""`
		if nullable {
			f.Native = "optString(ev." + f.GoName + ")"
		}
		f.Accessor = "StringOf: func(ev *Event) string { return ev." + f.GoName + " }"
	case (t.Type == "int" || t.Type == "long") && t.LogicalType == "" && !nullable:
		f.Kind, f.GoType = kindInt, "int64"
		f.Decode = "ev." + f.GoName + ", err = integer(k, v)"
		f.Accessor = "IntOf: func(ev *Event) int64 { return ev." + f.GoName + " }"
		if t.Type == "int" {
			f.GoType = "int32"
			f.Decode = "var n int64\nn, err = integer(k, v)\nev." + f.GoName + " = int32(n)"
			f.Accessor = "IntOf: func(ev *Event) int64 { return int64(ev." + f.GoName + ") }"
		}
		f.Native = "ev." + f.GoName
	case t.Type == "boolean" && !nullable:
		f.Kind, f.GoType = kindBool, "bool"
		f.Decode = "ev." + f.GoName + ", err = boolean(k, v)"
		f.Native = "ev." + f.GoName
		f.Accessor = "BoolOf: func(ev *Event) bool { return ev." + f.GoName + " }"
	case t.Type == "double" && nullable:
		f.Kind, f.GoType = kindDouble, "Null[float64]"
		f.Decode = "ev." + f.GoName + ", err = double(k, v)"
		f.Native, null = "optDouble(ev."+f.GoName+")", "not Valid"
		f.Accessor = "DoubleOf: func(ev *Event) Null[float64] { return ev." + f.GoName + " }"
	case t.Type == "long" && t.LogicalType == "timestamp-millis":
		f.Kind = kindTime
		if nullable {
			f.GoType = "Null[time.Time]"
			f.Decode = "ev." + f.GoName + ", err = timestamp(k, v)"
			f.Native, null = "optTime(ev."+f.GoName+")", "not Valid"
			f.Accessor = "TimeOf: func(ev *Event) Null[time.Time] { return ev." + f.GoName + " }"
			break
		}
		if !f.Required {
			return f, errors.New("a timestamp-millis with a non-null default is not supported")
		}
		f.GoType = "time.Time"
		f.Decode = "var t Null[time.Time]\nt, err = timestamp(k, v)\nev." + f.GoName + " = t.Value"
		f.Native = "ev." + f.GoName
		f.Accessor = "TimeOf: func(ev *Event) Null[time.Time] { return Some(ev." + f.GoName + ") }"
	case t.Type == "map" && !nullable:
		var values string
		if json.Unmarshal(t.Values, &values) != nil || values != "string" {
			return f, errors.New("only maps of strings are supported")
		}
		f.Kind, f.GoType = kindMap, "map[string]string"
		f.Decode = "ev." + f.GoName + ", err = attributes(k, v)"
		f.Native = "attrsNative(ev." + f.GoName + ")"
		f.Accessor = "MapOf: func(ev *Event) map[string]string { return ev." + f.GoName + " }"
	default:
		shape := string(af.Type)
		return f, fmt.Errorf("type %s is not supported: add it to eventgen with a decode helper in codec/native.go", shape)
	}
	f.Decode = strings.ReplaceAll(f.Decode, "(k,", "("+k+",")
	if f.Required {
		if f.Kind == kindTime {
			f.Decode += "\nif t.Valid {\nhas |= " + f.Bit + "\n}"
		} else {
			f.Decode += "\nhas |= " + f.Bit
		}
	}
	if !nullable && !f.Required {
		lit, err := defaultLiteral(f, af.Default)
		if err != nil {
			return f, err
		}
		f.Default = lit
	}
	f.Comment = comment(f, null)
	return f, nil
}

// parseType returns a field's type, unwrapping a ["null", T] union.
func parseType(raw json.RawMessage) (avroType, bool, error) {
	var union []json.RawMessage
	if json.Unmarshal(raw, &union) == nil {
		if len(union) != 2 || string(union[0]) != `"null"` {
			return avroType{}, false, fmt.Errorf(`union %s: only ["null", T] is supported`, raw)
		}
		t, _, err := parseType(union[1])
		return t, true, err
	}
	var name string
	if json.Unmarshal(raw, &name) == nil {
		return avroType{Type: name}, false, nil
	}
	var t avroType
	if err := json.Unmarshal(raw, &t); err != nil || t.Type == "" {
		return avroType{}, false, fmt.Errorf("type %s: not a type", raw)
	}
	return t, false, nil
}

// defaultLiteral is the Go literal of a non-null reader default, "" when it
// is the Go zero value.
func defaultLiteral(f field, raw json.RawMessage) (string, error) {
	switch f.Kind {
	case kindString:
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("default %s: not a string", raw)
		}
		if s == "" {
			return "", nil
		}
		return strconv.Quote(s), nil
	case kindInt:
		n, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return "", fmt.Errorf("default %s: not an integer", raw)
		}
		if n == 0 {
			return "", nil
		}
		return strconv.FormatInt(n, 10), nil
	case kindBool:
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", fmt.Errorf("default %s: not a boolean", raw)
		}
		if !b {
			return "", nil
		}
		return "true", nil
	case kindMap:
		var m map[string]string
		if err := json.Unmarshal(raw, &m); err != nil || len(m) != 0 {
			return "", fmt.Errorf("default %s: only {} is supported for a map", raw)
		}
		return "", nil
	}
	return "", fmt.Errorf("default %s is not supported for this type", raw)
}

// comment is the doc comment of an Event field.
func comment(f field, null string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is %s", f.GoName, f.Name)
	if f.Kind == kindTime {
		b.WriteString(", in UTC")
	}
	if f.Required {
		b.WriteString(", required")
	}
	if f.Nullable {
		fmt.Fprintf(&b, "; %s when null or absent", null)
	}
	b.WriteString(".")
	if d := strings.TrimSpace(f.Doc); d != "" {
		b.WriteString("\n" + strings.ToUpper(d[:1]) + d[1:])
		if !strings.HasSuffix(d, ".") {
			b.WriteString(".")
		}
	}
	return b.String()
}

// initialisms are the words written in capitals in Go names.
var initialisms = map[string]string{"id": "ID", "api": "API", "ab": "AB", "usd": "USD", "url": "URL"}

// goName turns a snake_case Avro name into a Go field name; "_ms" of a
// timestamp is dropped since the field holds a time.Time. "" when the name
// is not snake_case.
func goName(avro string) string {
	avro = strings.TrimSuffix(avro, "_ms")
	var b strings.Builder
	for w := range strings.SplitSeq(avro, "_") {
		if w == "" || w[0] < 'a' || w[0] > 'z' {
			return ""
		}
		for _, c := range w {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
				return ""
			}
		}
		if up, ok := initialisms[w]; ok {
			b.WriteString(up)
		} else {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

var tmpl = template.Must(template.New("event_gen.go").Funcs(template.FuncMap{
	"comment": func(s string) string { return "// " + strings.ReplaceAll(s, "\n", "\n// ") },
	"quote":   strconv.Quote,
}).Parse(`// Code generated by eventgen from {{.Source}}. DO NOT EDIT.

package {{.Package}}
{{if .UsesTime}}
import "time"
{{end}}
// Event is one Purchasely subscription event, decoded: the fields of the
// {{.Record}} schema, typed and in schema order.
//
// Optional string fields hold "" when the record has null; optional numbers
// and times use Null so that a real zero (a free plan's price of 0) stays
// distinguishable from "absent". An Event is owned by whoever decoded it and
// is not safe for concurrent mutation.
type Event struct {
{{- range .Fields}}
	{{comment .Comment}}
	{{.GoName}} {{.GoType}}
{{- end}}
}

// fieldNames are the reader schema's fields, in schema order.
var fieldNames = [...]string{
{{- range .Fields}}
	{{quote .Name}},
{{- end}}
}

// required lists the fields without a default in the reader schema: a writer
// schema without one of them cannot produce a usable event.
var required = [...]string{
{{- range .Required}}
	{{quote .Name}},
{{- end}}
}

// One bit per required field, in the order of required.
const (
{{- range $i, $f := .Required}}
	{{$f.Bit}}{{if eq $i 0}} {{$.BitType}} = 1 << iota{{end}}
{{- end}}
	hasAllRequired = 1<<len(required) - 1
)

// fromNative fills ev from goavro's native record by field name: fields the
// reader does not know are ignored, optional fields the writer did not have
// stay null.
func fromNative(m map[string]any, ev *Event) error {
	// Looking the reader's fields up is cheaper than ranging over goavro's
	// map, and it ignores the writer's extra fields for free.
	var vals [len(fieldNames)]any
	var present [len(fieldNames)]bool
	for i, k := range fieldNames {
		vals[i], present[i] = m[k]
	}
	return fromFields(&vals, &present, ev)
}

// fromFields fills ev from the values of the reader's fields by index, as
// fromNative and the flat record decoder (flat.go) find them: vals[i] is
// field i's value when present[i], goavro's native value (the flat decoder
// unwraps a union's branch, which the helpers accept either way).
func fromFields(vals *[len(fieldNames)]any, present *[len(fieldNames)]bool, ev *Event) error {
	*ev = Event{ {{- .Defaults -}} } // the reader schema's defaults
	var has {{.BitType}}
	for i := range fieldNames {
		if !present[i] {
			continue
		}
		h, err := setField(ev, i, vals[i])
		if err != nil {
			return err
		}
		has |= h
	}
	return checkRequired(has)
}

// setField decodes v, the value of reader field i, into ev, and returns
// the field's bit when it is a required one.
func setField(ev *Event, i int, v any) (has {{.BitType}}, err error) {
	switch i {
{{- range $i, $f := .Fields}}
	case {{$i}}: // {{$f.Name}}
		{{$f.Decode}}
{{- end}}
	}
	return has, err
}

// checkRequired returns the missing_field error of the first required
// field, in schema order, that has does not have.
func checkRequired(has {{.BitType}}) error {
	if has != hasAllRequired {
		for i, name := range required {
			if has&(1<<i) == 0 {
				return permanent("missing_field", ErrMissingField, "%s", name)
			}
		}
	}
	return nil
}

// Native returns ev as goavro's native form for the schema
// {{.Record}}: the inverse of decoding, used to encode
// fixtures and test records. goavro ignores map keys its schema does not
// have, so the same map also encodes with an older writer schema.
func Native(ev *Event) map[string]any {
	return map[string]any{
{{- range .Fields}}
		{{quote .Name}}: {{.Native}},
{{- end}}
	}
}

// fields are the schema's fields, in schema order; Fields returns a copy.
var fields = [...]FieldInfo{
{{- range .Fields}}
	{
		Name: {{quote .Name}}, GoName: {{quote .GoName}}, Kind: {{.Kind}},
		{{- if .Required}} Required: true,{{end}}{{if .Nullable}} Nullable: true,{{end}}
		{{- if .Doc}}
		Doc: {{quote .Doc}},
		{{- end}}
		{{.Accessor}},
	},
{{- end}}
}
`))
