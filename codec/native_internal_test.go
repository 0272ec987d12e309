package codec

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/schemas"
)

// v1Schema is the schema before the Purchasely webhook attributes were
// added; producers may still write with it.
const v1Schema = "subscription_event.v1.avsc"

type schemaField struct {
	Name    string          `json:"name"`
	Type    json.RawMessage `json:"type"`
	Default json.RawMessage `json:"default"`
}

func readFields(t testing.TB, file string) []schemaField {
	t.Helper()
	text, err := schemas.FS.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var s struct{ Fields []schemaField }
	if err := json.Unmarshal(text, &s); err != nil {
		t.Fatal(err)
	}
	return s.Fields
}

// TestFieldsMatchSchema keeps the generated tables in step with
// schemas/subscription_event.avsc for whoever edits the schema and runs only
// this package (internal/gen/eventgen's test compares the whole file).
// Mutations caught: "audience" deleted from fieldNames in event_gen.go;
// Required: true added to offer_type's FieldInfo.
func TestFieldsMatchSchema(t *testing.T) {
	var names, req []string
	for _, f := range readFields(t, schemas.SubscriptionEventFile) {
		names = append(names, f.Name)
		if f.Default == nil {
			req = append(req, f.Name)
		}
	}
	if !slices.Equal(names, fieldNames[:]) {
		t.Fatalf("schema fields %v\ndecoder fields %v", names, fieldNames)
	}
	if !slices.Equal(req, required[:]) {
		t.Fatalf("schema fields without a default %v\nrequired %v", req, required)
	}
	infos := Fields()
	for i, f := range infos {
		if f.Name != names[i] || f.Required != slices.Contains(req, f.Name) {
			t.Errorf("Fields()[%d] = %s required=%v, schema has %s", i, f.Name, f.Required, names[i])
		}
		set := 0
		for _, fn := range []any{f.StringOf, f.IntOf, f.BoolOf, f.DoubleOf, f.TimeOf, f.MapOf} {
			if !reflect.ValueOf(fn).IsNil() {
				set++
			}
		}
		if set != 1 {
			t.Errorf("%s: %d accessors set, want exactly one", f.Name, set)
		}
	}
	infos[0].Name = "changed"
	if Fields()[0].Name != "event_id" {
		t.Fatal("Fields() shares its table with callers")
	}
}

// TestSchemaOnlyAppendsOptionalFields: a field may only be added at the end
// of the schema, with a null default, so that records of the earlier version
// still decode and its single-object fingerprint stays known.
// Mutation caught: a new field added without "default": null, or inserted
// before "audience".
func TestSchemaOnlyAppendsOptionalFields(t *testing.T) {
	old, cur := readFields(t, v1Schema), readFields(t, schemas.SubscriptionEventFile)
	if len(cur) < len(old) {
		t.Fatalf("the schema has %d fields, fewer than v1's %d", len(cur), len(old))
	}
	for i, f := range old {
		if cur[i].Name != f.Name || string(cur[i].Type) != string(f.Type) {
			t.Fatalf("field %d is %s %s, was %s %s in v1", i, cur[i].Name, cur[i].Type, f.Name, f.Type)
		}
	}
	for _, f := range cur[len(old):] {
		if string(f.Default) != "null" {
			t.Errorf("field %s added after v1 has default %s, want null", f.Name, f.Default)
		}
	}
}

// full returns an event with every field set to a value that is not the
// reader's default, UTC times on the millisecond.
func full() Event {
	at := func(d int) time.Time { return time.Date(2026, 11, d, 8, 30, 0, 123e6, time.UTC) }
	return Event{
		EventID: "11111111-2222-4333-8444-555555555555", EventName: "SUBSCRIPTION_RENEWED", EventCreatedAt: at(1),
		APIVersion: 4, AppID: "com.example.fitness", Environment: "PRODUCTION", UserID: "user-1", AnonymousUserID: "anon-1",
		UserAttributes: map[string]string{"at_internet_id_client": "idc-1"}, Store: "APPLE_APP_STORE", StoreCountry: "FR",
		Product: "premium", Plan: "monthly", PreviousPlan: "weekly", OfferIdentifier: "offer_INTR", OfferType: "INTRO_OFFER",
		PlanPriceInCustomerCurrency: Some(9.99), CustomerCurrency: "EUR", AmountInCustomerCurrency: Some(-4.5),
		PurchasedAt: Some(at(2)), NextRenewalAt: Some(at(3)), SubscriptionStatus: "AUTO_RENEWING", IsFamilyShared: true,
		StoreTransactionID: "1000000001", StoreOriginalTransactionID: "1000000000", PurchaselySubscriptionID: "subs_X",
		Placement: "onboarding", Presentation: "paywall_v1", ABTest: "price_q4", ABTestVariant: "b", Audience: "returning",
		ContentID: "article_1234", DeviceType: "PAD", StoreProductID: "com.example.premium.monthly",
		OriginalPurchasedAt: Some(at(4)), CumulatedRevenuesInUSD: Some(69.9),
	}
}

func mustCodec(t testing.TB, file string) *goavro.Codec {
	t.Helper()
	text, err := schemas.FS.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	c, err := goavro.NewCodec(string(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEveryFieldRoundTrips encodes an event with every field set and decodes
// it: each generated case must fill its own field, and Native must write
// every field. Mutations caught: content_id's case in event_gen.go assigning
// ev.DeviceType; Native's "store_product_id" entry deleted.
func TestEveryFieldRoundTrips(t *testing.T) {
	want := full()
	v := reflect.ValueOf(want)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("full() leaves %s zero: set it so that this test covers it", v.Type().Field(i).Name)
		}
	}
	c := mustCodec(t, schemas.SubscriptionEventFile)
	b, err := c.BinaryFromNative(nil, Native(&want))
	if err != nil {
		t.Fatal(err)
	}
	native, _, err := c.NativeFromBinary(b)
	if err != nil {
		t.Fatal(err)
	}
	var got Event
	if err := fromNative(native.(map[string]any), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// TestAccessorsReadTheirField: each FieldInfo accessor returns its own
// field. Mutation caught: StoreProductID's accessor returning
// ev.StoreTransactionID.
func TestAccessorsReadTheirField(t *testing.T) {
	ev := full()
	v := reflect.ValueOf(ev)
	for _, f := range Fields() {
		var got any
		switch f.Kind {
		case KindString:
			got = f.StringOf(&ev)
		case KindInt:
			got = f.IntOf(&ev)
		case KindBool:
			got = f.BoolOf(&ev)
		case KindDouble:
			got = f.DoubleOf(&ev)
		case KindTime:
			got = f.TimeOf(&ev)
		case KindMap:
			got = f.MapOf(&ev)
		default:
			t.Fatalf("%s: kind %v", f.Name, f.Kind)
		}
		want := v.FieldByName(f.GoName).Interface()
		switch w := want.(type) {
		case int32:
			want = int64(w)
		case time.Time:
			want = Some(w)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s (%s): accessor gives %v, field holds %v", f.Name, f.Kind, got, want)
		}
	}
}

// TestReaderDefaults: fields the writer did not have take the reader
// schema's defaults. Mutation caught: the defaults literal of fromNative
// emptied in eventgen's template (APIVersion 0, OfferType "").
func TestReaderDefaults(t *testing.T) {
	m := map[string]any{}
	ev := full()
	for k, v := range Native(&ev) {
		if slices.Contains(required[:], k) {
			m[k] = v
		}
	}
	var got Event
	if err := fromNative(m, &got); err != nil {
		t.Fatal(err)
	}
	want := Event{EventID: ev.EventID, EventName: ev.EventName, EventCreatedAt: ev.EventCreatedAt, AppID: ev.AppID,
		Environment: ev.Environment, Store: ev.Store, Product: ev.Product, Plan: ev.Plan, APIVersion: 3, OfferType: "NONE"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	delete(m, "plan")
	if err := fromNative(m, &got); err == nil || err.Error() != "missing required field: plan" {
		t.Fatalf("without plan: err = %v", err)
	}
}

// TestOlderWriterDecodes: a record written with the v1 schema, which lacks
// the webhook attributes, decodes into the new Event with them null, in
// every framing. Mutations caught: content_id's default removed (so it is
// required: missing_field); subscription_event.v1.avsc removed from schemas/
// (single-object: unknown fingerprint).
func TestOlderWriterDecodes(t *testing.T) {
	c := mustCodec(t, v1Schema)
	ev := full()
	body, err := c.BinaryFromNative(nil, Native(&ev)) // goavro ignores the keys v1 lacks
	if err != nil {
		t.Fatal(err)
	}
	want := ev
	want.ContentID, want.DeviceType, want.StoreProductID = "", "", ""
	want.OriginalPurchasedAt, want.CumulatedRevenuesInUSD = Null[time.Time]{}, Null[float64]{}

	reg := srfake.New()
	t.Cleanup(reg.Close)
	reg.SeedSchema("purchasely.subscription-events-value", 1, 3, sr.Schema{Schema: c.Schema(), Type: sr.TypeAvro})
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	confluent := binary.BigEndian.AppendUint32([]byte{0}, 3)
	single := binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, c.Rabin)
	tests := []struct {
		name    string
		framing Framing
		reg     *sr.Client
		raw     string
		value   []byte
	}{
		{"confluent, v1 from the registry", FramingConfluent, cl, "", append(confluent, body...)},
		{"single-object, v1 embedded", FramingSingleObject, nil, "", append(single, body...)},
		{"raw, v1 configured", FramingRaw, nil, c.Schema(), body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(tt.framing, tt.reg, tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			var got Event
			if err := d.DecodeInto(context.Background(), tt.value, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// BenchmarkFromNative measures the generated native-to-struct mapping alone,
// on a typical event as goavro decodes it.
func BenchmarkFromNative(b *testing.B) {
	c := mustCodec(b, schemas.SubscriptionEventFile)
	ev := full()
	bin, err := c.BinaryFromNative(nil, Native(&ev))
	if err != nil {
		b.Fatal(err)
	}
	native, _, err := c.NativeFromBinary(bin)
	if err != nil {
		b.Fatal(err)
	}
	m := native.(map[string]any)
	b.ReportAllocs()
	for b.Loop() {
		if err := fromNative(m, &ev); err != nil {
			b.Fatal(err)
		}
	}
}
