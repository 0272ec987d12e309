package codec

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/linkedin/goavro/v2"

	"github.com/atrelay/atrelay/schemas"
)

// TestStringsAsBytesRespell: only string types are respelled — in fields,
// unions, map values, array items, nested records and the object form —
// never names or defaults; a schema with bytes of its own (decimal
// included) is left alone. Mutation caught: the "bytes" case of respell
// returning x, true (a schema with bytes is respelled, and its bytes read
// as strings: "bytes field" fails).
func TestStringsAsBytesRespell(t *testing.T) {
	tests := []struct {
		name, schema, want string
		ok                 bool
	}{
		{"primitive", `"string"`, `"bytes"`, true},
		{"field named string, default kept",
			`{"type":"record","name":"string","fields":[{"name":"string","type":"string","default":"string"}]}`,
			`{"fields":[{"default":"string","name":"string","type":"bytes"}],"name":"string","type":"record"}`, true},
		{"union, map, array, object form, nested record",
			`{"type":"record","name":"r","fields":[{"name":"a","type":["null","string"]},{"name":"m","type":{"type":"map","values":"string"}},` +
				`{"name":"l","type":{"type":"array","items":{"type":"string","logicalType":"uuid"}}},` +
				`{"name":"n","type":{"type":"record","name":"n","fields":[{"name":"s","type":"string"},{"name":"e","type":{"type":"enum","name":"e","symbols":["string"]}}]}},` +
				`{"name":"big","type":"long","default":9007199254740993}]}`,
			`{"fields":[{"name":"a","type":["null","bytes"]},{"name":"m","type":{"type":"map","values":"bytes"}},` +
				`{"name":"l","type":{"items":{"logicalType":"uuid","type":"bytes"},"type":"array"}},` +
				`{"name":"n","type":{"fields":[{"name":"s","type":"bytes"},{"name":"e","type":{"name":"e","symbols":["string"],"type":"enum"}}],"name":"n","type":"record"}},` +
				`{"default":9007199254740993,"name":"big","type":"long"}],"name":"r","type":"record"}`, true},
		{"bytes field", `{"type":"record","name":"r","fields":[{"name":"s","type":"string"},{"name":"b","type":["null","bytes"]}]}`, "", false},
		{"decimal", `{"type":"record","name":"r","fields":[{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":4}}]}`, "", false},
		{"not json", `{`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := stringsAsBytes(tt.schema)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("stringsAsBytes = %s, %v\nwant %s, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
	wc, err := newWriterCodec(schemas.SubscriptionEvent())
	if err != nil || !wc.stringsAsBytes {
		t.Fatalf("the event schema's codec: stringsAsBytes %v, %v", wc != nil && wc.stringsAsBytes, err)
	}
	if plain := mustCodec(t, schemas.SubscriptionEventFile); wc.rabin != plain.Rabin {
		t.Fatalf("fingerprint %016x, want the schema's as written %016x", wc.rabin, plain.Rabin)
	}
}

// decodeBoth decodes body with the writer schema's respelled codec and with
// its plain one (goavro's strings, as before writerCodec), and fails unless
// both give the same event or the same error.
func decodeBoth(t testing.TB, schema string, body []byte) (Event, error) {
	t.Helper()
	fast, err := newWriterCodec(schema)
	if err != nil {
		t.Fatal(err)
	}
	plainCodec, err := goavro.NewCodec(schema)
	if err != nil {
		t.Fatal(err)
	}
	plain := &writerCodec{codec: plainCodec, rabin: plainCodec.Rabin}
	var evs [2]Event
	var errs [2]error
	for i, wc := range []*writerCodec{fast, plain} {
		d := &Decoder{framing: FramingRaw, raw: wc, maxBytes: DefaultMaxRecordBytes}
		errs[i] = d.DecodeInto(context.Background(), body, &evs[i])
	}
	var pe [2]*PermanentError
	switch {
	case (errs[0] == nil) != (errs[1] == nil):
		t.Fatalf("respelled codec: %v; plain codec: %v", errs[0], errs[1])
	case errs[0] == nil:
		if !reflect.DeepEqual(evs[0], evs[1]) {
			t.Fatalf("respelled codec %+v\nplain codec     %+v", evs[0], evs[1])
		}
	case !errors.As(errs[0], &pe[0]) || !errors.As(errs[1], &pe[1]) || pe[0].Reason() != pe[1].Reason():
		t.Fatalf("respelled codec: %v; plain codec: %v", errs[0], errs[1])
	case pe[0].Reason() != "corrupt" && errs[0].Error() != errs[1].Error():
		// goavro's own messages name the type it read (bytes, string):
		// only errors of ours must read the same.
		t.Fatalf("respelled codec: %v; plain codec: %v", errs[0], errs[1])
	}
	return evs[0], errs[0]
}

// TestStringsAsBytesDecodesAlike: the respelled codec gives the event, or
// the error, that goavro's strings gave — empty, non-ASCII and absent
// strings, attributes empty or not, an older writer, a writer schema whose
// types are wrong — and a writer schema with bytes of its own still has
// its bytes refused where a string is wanted. Mutations caught:
// rejectBytes returning nil (the plain codec accepts bytes as event_id:
// "bytes event_id" fails); wrongType printing []uint8 for bytes
// ("string price" fails: the messages differ).
func TestStringsAsBytesDecodesAlike(t *testing.T) {
	cur, err := schemas.FS.ReadFile(schemas.SubscriptionEventFile)
	if err != nil {
		t.Fatal(err)
	}
	v1, err := schemas.FS.ReadFile(v1Schema)
	if err != nil {
		t.Fatal(err)
	}
	sparse := Event{EventID: "e", EventName: "n", EventCreatedAt: full().EventCreatedAt, AppID: "a", Environment: "",
		Store: "s", Product: "p", Plan: "", OfferType: "NONE", UserAttributes: map[string]string{"k": ""}}
	unicode := full()
	unicode.Placement, unicode.UserAttributes = "écran d’accueil 🎉", map[string]string{"clé": "välue", "empty": ""}
	// A writer schema with one field's type changed, and what the record
	// holds there.
	retype := func(field, typ string) string {
		var b strings.Builder
		for line := range strings.Lines(string(cur)) {
			if strings.Contains(line, `"name": "`+field+`"`) {
				i := strings.Index(line, `"type":`)
				j := strings.Index(line[i:], `, "default"`)
				if j < 0 {
					j = strings.Index(line[i:], `, "doc"`)
				}
				if j < 0 {
					j = strings.LastIndex(line[i:], "}")
				}
				line = line[:i] + `"type": ` + typ + line[i+j:]
			}
			b.WriteString(line)
		}
		return b.String()
	}
	// A union with null second cannot have null as its default.
	nullSecond := strings.Replace(retype("placement", `["string", "null"]`), `["string", "null"], "default": null`, `["string", "null"]`, 1)
	tests := []struct {
		name    string
		schema  string
		ev      Event
		patch   map[string]any // native values replacing the event's
		wantErr string         // "" for a decoded event
	}{
		{"every field", string(cur), full(), nil, ""},
		{"sparse, empty strings", string(cur), sparse, nil, ""},
		{"non-ascii", string(cur), unicode, nil, ""},
		{"no attributes", string(cur), Event{EventID: "e", EventName: "n", AppID: "a", Store: "s", Product: "p", Plan: "q", OfferType: "NONE"}, nil, ""},
		{"older writer", string(v1), full(), nil, ""},
		{"int event_id", retype("event_id", `"int"`), full(), map[string]any{"event_id": int32(7)}, "field has the wrong type: event_id: int32"},
		{"string price", retype("plan_price_in_customer_currency", `["null", "string"]`), full(),
			map[string]any{"plan_price_in_customer_currency": map[string]any{"string": "9.99"}},
			"field has the wrong type: plan_price_in_customer_currency: string"},
		{"int attributes", retype("user_attributes", `{"type": "map", "values": "int"}`), full(),
			map[string]any{"user_attributes": map[string]any{"k": int32(1)}}, "field has the wrong type: user_attributes.k: int32"},
		{"bytes event_id", retype("event_id", `"bytes"`), full(), map[string]any{"event_id": []byte("e")},
			"field has the wrong type: event_id: []uint8"},
		{"bytes attributes", retype("user_attributes", `{"type": "map", "values": "bytes"}`), full(),
			map[string]any{"user_attributes": map[string]any{"k": []byte("v")}}, "field has the wrong type: user_attributes.k: []uint8"},
		{"extra bytes field ignored", strings.Replace(string(cur), `"fields": [`, `"fields": [{"name": "sig", "type": "bytes"},`, 1), full(),
			map[string]any{"sig": []byte{0xff, 0}}, ""},
		// The flat record decoder's own paths (flat.go): a union with its
		// null second, set and null; writer fields the reader does not
		// have, of every flat shape; a required field the writer lacks.
		{"null-second union", nullSecond, full(), map[string]any{"placement": map[string]any{"string": "home"}}, ""},
		{"null-second union, null", nullSecond, full(), map[string]any{"placement": nil}, ""},
		{"extra flat fields ignored", strings.Replace(string(cur), `"fields": [`, `"fields": [{"name": "tags", "type": {"type": "array", "items": "string"}}, `+
			`{"name": "counts", "type": ["null", {"type": "map", "values": "long"}]}, {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},`, 1), full(),
			map[string]any{"tags": []any{"a", "b"}, "counts": map[string]any{"map": map[string]any{"x": int64(3)}}, "at": time.UnixMicro(1700000000000001)}, ""},
		{"writer without store", strings.Replace(string(cur), `{"name": "store", "type": "string", "doc": "APPLE_APP_STORE, GOOGLE_PLAY_STORE, AMAZON_APPSTORE, HUAWEI_APPGALLERY, STRIPE"},`, "", 1),
			full(), nil, "missing required field: store"},
	}
	// Every writer schema without bytes of its own is a flat record, which
	// decodes through flat.go: decodeBoth compares it with goavro's record
	// codec on the plain schema.
	notFlat := map[string]bool{"bytes event_id": true, "bytes attributes": true, "extra bytes field ignored": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if wc, err := newWriterCodec(tt.schema); err != nil || (wc.flat == nil) != notFlat[tt.name] {
				t.Fatalf("flat decoder: %v (err %v), want one: %v", wc != nil && wc.flat != nil, err, !notFlat[tt.name])
			}
			c, err := goavro.NewCodec(tt.schema)
			if err != nil {
				t.Fatal(err)
			}
			native := Native(&tt.ev)
			for k, v := range tt.patch {
				native[k] = v
			}
			body, err := c.BinaryFromNative(nil, native)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeBoth(t, tt.schema, body)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := tt.ev
			switch tt.name {
			case "null-second union":
				want.Placement = "home"
			case "null-second union, null":
				want.Placement = ""
			}
			if tt.schema == string(v1) {
				want.ContentID, want.DeviceType, want.StoreProductID = "", "", ""
				want.OriginalPurchasedAt, want.CumulatedRevenuesInUSD = Null[time.Time]{}, Null[float64]{}
			}
			if len(want.UserAttributes) == 0 {
				want.UserAttributes = nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// fullValue returns the fixture event with every field set, its Avro body
// in the event schema, and a decoder of raw values.
func fullValue(t *testing.T) (Event, []byte, *Decoder) {
	t.Helper()
	ev := full()
	body, err := mustCodec(t, schemas.SubscriptionEventFile).BinaryFromNative(nil, Native(&ev))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(FramingRaw, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return ev, body, d
}

// TestEventDoesNotAliasValue: the strings of a decoded event point into
// the decoder's own copy of the value, so overwriting the record value
// afterwards (the Kafka client reusing its buffer) changes nothing, and
// EventID does not share the decode buffer. Mutations caught: DecodeInto
// decoding body itself instead of its copy; EventID not cloned.
func TestEventDoesNotAliasValue(t *testing.T) {
	ev, body, d := fullValue(t)
	var got Event
	if err := d.DecodeInto(context.Background(), body, &got); err != nil {
		t.Fatal(err)
	}
	for i := range body {
		body[i] = 'x'
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("after the value was overwritten: got %+v\nwant %+v", got, ev)
	}
	// EventID has its own copy, not the bytes before EventName in the
	// buffer the other strings share (in the record, event_id's text is
	// followed by event_name's one-byte length, then its text): a span
	// keeping the id keeps no more.
	id, name := unsafe.StringData(got.EventID), unsafe.StringData(got.EventName)
	if unsafe.Add(unsafe.Pointer(id), len(got.EventID)+1) == unsafe.Pointer(name) {
		t.Fatal("EventID is in the decode buffer, just before EventName")
	}
}

// FuzzStringsAsBytes: on any input, the respelled codec decodes as the
// plain one does (decodeBoth); the event schema's respelled codec is a
// flat record, so this also holds flat.go to goavro's record codec.
func FuzzStringsAsBytes(f *testing.F) {
	// As in production, goavro's MaxBlockCount lowered (New does it):
	// without it a claimed map block count pre-sizes a map of billions of
	// entries, and one input (testdata) took 11 s on both paths.
	if _, err := New(FramingRaw, nil, ""); err != nil {
		f.Fatal(err)
	}
	c, err := goavro.NewCodec(schemas.SubscriptionEvent())
	if err != nil {
		f.Fatal(err)
	}
	ev := full()
	body, err := c.BinaryFromNative(nil, Native(&ev))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body)
	f.Add(body[:len(body)/2])
	f.Add([]byte{})
	// For the flat decoder: a byte after the record, and event_id's
	// string cut to a union branch index of 2 (user_id's place).
	f.Add(append(body[:len(body):len(body)], 0))
	f.Add([]byte{2, 'e', 2, 'n', 2, 6, 'a', 2, 'p', 4})
	f.Fuzz(func(t *testing.T, body []byte) {
		decodeBoth(t, schemas.SubscriptionEvent(), body)
	})
}

// BenchmarkRespelledNativeFromBinary is goavro alone as DecodeInto now
// calls it — the event schema's respelled codec on its own copy of a
// typical value — so that DecodeInto's cost splits into goavro's share and
// ours (BenchmarkDecode minus this).
func BenchmarkRespelledNativeFromBinary(b *testing.B) {
	wc, err := newWriterCodec(schemas.SubscriptionEvent())
	if err != nil || !wc.stringsAsBytes {
		b.Fatal("no respelled codec", err)
	}
	ev := full()
	value, err := mustCodec(b, schemas.SubscriptionEventFile).BinaryFromNative(nil, Native(&ev))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		body := append([]byte(nil), value...)
		if _, _, err := wc.codec.NativeFromBinary(body); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeIntoSharedAliasesValue: DecodeIntoShared decodes what
// DecodeInto decodes, without DecodeInto's copy of the value — its strings
// point into the caller's value (overwriting the value changes them) —
// while EventID keeps its own copy.
// Mutations caught: decodeInto ignoring shared (the strings survive the
// overwrite: "does not share"); the EventID clone skipped when shared
// (EventID changes with the value).
func TestDecodeIntoSharedAliasesValue(t *testing.T) {
	ev, body, d := fullValue(t)
	var got Event
	if err := d.DecodeIntoShared(context.Background(), body, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("got %+v\nwant %+v", got, ev)
	}
	for i := range body {
		body[i] = 'x'
	}
	if got.EventName == ev.EventName {
		t.Fatal("DecodeIntoShared does not share the value: EventName survived its overwrite")
	}
	if got.EventID != ev.EventID {
		t.Fatalf("EventID = %q after the value was overwritten, want its own copy %q", got.EventID, ev.EventID)
	}
}
