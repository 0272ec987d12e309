package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/pipeline"
)

func compile(t testing.TB) *pipeline.Integrations {
	t.Helper()
	in, err := pipeline.Compile(fixture.Integrations("logs1.xiti.com"))
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func base() codec.Event {
	return codec.Event{
		EventID: "11111111-2222-4333-8444-555555555555", EventName: "SUBSCRIPTION_STARTED",
		EventCreatedAt: time.Date(2026, 11, 1, 8, 30, 0, 123e6, time.UTC), AppID: fixture.AppFitness, Environment: "PRODUCTION",
		UserID: "u1", AnonymousUserID: "anon1", UserAttributes: map[string]string{"at_internet_id_client": "idc-1"},
		Store: "APPLE_APP_STORE", Product: "premium", Plan: "monthly", OfferType: "NONE", ABTestVariant: "b",
		PlanPriceInCustomerCurrency: codec.Some(4.99), CustomerCurrency: "EUR",
	}
}

// run routes and maps ev as the service does (a chain without custom
// stages).
func run(t testing.TB, in *pipeline.Integrations, ev codec.Event) (*pipeline.Hit, pipeline.Report, error) {
	h := &pipeline.Hit{Event: &ev}
	rep, err := pipeline.NewChain(in, nil).Process(context.Background(), h)
	return h, rep, err
}

func TestFilterReasons(t *testing.T) {
	in := compile(t)
	tests := []struct {
		name   string
		change func(*codec.Event)
		want   error
	}{
		{"routed", func(*codec.Event) {}, nil},
		{"no integration", func(e *codec.Event) { e.AppID = "com.other" }, pipeline.ErrNoIntegration},
		{"integration disabled", func(e *codec.Event) { e.AppID = fixture.AppGames }, pipeline.ErrIntegrationDisabled},
		{"sandbox not enabled", func(e *codec.Event) { e.Environment = "SANDBOX" }, pipeline.ErrEnvironmentDisabled},
		{"event not enabled", func(e *codec.Event) { e.EventName = "TRANSACTION_PROCESSED" }, pipeline.ErrEventNotEnabled},
		{"no idclient", func(e *codec.Event) { e.UserAttributes = nil }, pipeline.ErrNoIDClient},
		{"sandbox enabled for news", func(e *codec.Event) { e.AppID, e.Environment = fixture.AppNews, "SANDBOX" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := base()
			tt.change(&ev)
			_, _, err := run(t, in, ev)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if reason, ok := pipeline.DropReason(err); ok != (tt.want != nil) || (ok && reason == "") {
				t.Fatalf("DropReason = %q, %v", reason, ok)
			}
		})
	}
}

func TestNamesAndProperties(t *testing.T) {
	in := compile(t)
	tests := []struct {
		name     string
		change   func(*codec.Event)
		wantName string
		wantID   string
		check    func(t *testing.T, props map[string]pipeline.Value)
	}{
		{"override and renames", func(*codec.Event) {}, "subscription.started", "idc-1", func(t *testing.T, p map[string]pipeline.Value) {
			if p["plan_id"].Str != "monthly" || p["plan"] != (pipeline.Value{}) || p["ab_test_variant"] != (pipeline.Value{}) {
				t.Fatalf("rename/drop not applied: %v", p)
			}
			if p["app_name"].Str != "Fitness" || p["tier"].Int != 2 || p["event_date"].Str != "2026-11-01T08:30:00.123Z" || p["plan_price"].Float != 4.99 {
				t.Fatalf("static or derived wrong: %v", p)
			}
			if p["user_id"].Str != "u1" || p["purchasely_event"].Str != "SUBSCRIPTION_STARTED" {
				t.Fatalf("user_id/purchasely_event: %v", p)
			}
		}},
		{"default lowercase name", func(e *codec.Event) { e.EventName = "TRIAL_CONVERTED" }, "trial_converted", "idc-1", nil},
		{"nulls omitted", func(e *codec.Event) { e.UserID, e.PlanPriceInCustomerCurrency = "", codec.Null[float64]{} }, "subscription.started", "idc-1", func(t *testing.T, p map[string]pipeline.Value) {
			if _, ok := p["user_id"]; ok {
				t.Fatal("user_id sent without a Purchasely user id")
			}
			if _, ok := p["plan_price"]; ok {
				t.Fatal("null price sent")
			}
		}},
		{"idclient falls back in order", func(e *codec.Event) {
			e.AppID, e.UserAttributes = fixture.AppNews, map[string]string{"at_internet_id_client": ""}
		}, "subscription_started", "u1", nil},
		{"idclient last source", func(e *codec.Event) { e.AppID, e.UserAttributes, e.UserID = fixture.AppNews, nil, "" }, "subscription_started", "anon1", nil},
		{"long string truncated on a rune boundary", func(e *codec.Event) { e.Placement = strings.Repeat("é", 300) }, "subscription.started", "idc-1", func(t *testing.T, p map[string]pipeline.Value) {
			if got := []rune(p["placement"].Str); len(got) != 255 || string(got) != strings.Repeat("é", 255) {
				t.Fatalf("placement is %d runes", len(got))
			}
		}},
		{"decimal out of range left out", func(e *codec.Event) { e.AmountInCustomerCurrency = codec.Some(2e15) }, "subscription.started", "idc-1", func(t *testing.T, p map[string]pipeline.Value) {
			if _, ok := p["amount"]; ok {
				t.Fatal("amount 2e15 sent")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := base()
			tt.change(&ev)
			h, _, err := run(t, in, ev)
			if err != nil {
				t.Fatal(err)
			}
			if h.Name != tt.wantName || h.IDClient != tt.wantID {
				t.Fatalf("name %q idclient %q, want %q %q", h.Name, h.IDClient, tt.wantName, tt.wantID)
			}
			props := map[string]pipeline.Value{}
			for _, p := range h.Props {
				props[p.Key] = p.Value
			}
			if tt.check != nil {
				tt.check(t, props)
			}
		})
	}
	ev := base()
	ev.Placement = strings.Repeat("x", 256)
	_, rep, _ := run(t, in, ev)
	if rep.Truncated != 1 {
		t.Fatalf("Truncated = %d, want 1", rep.Truncated)
	}
}

// TestRoute: Route alone picks the integration by app id and drops, with
// each reason, what that integration does not send; the visitor id is not
// its concern.
func TestRoute(t *testing.T) {
	in := compile(t)
	tests := []struct {
		name     string
		change   func(*codec.Event)
		wantSite string
		want     error
	}{
		{"fitness", func(*codec.Event) {}, "fitness", nil},
		{"news sandbox", func(e *codec.Event) { e.AppID, e.Environment = fixture.AppNews, "SANDBOX" }, "news", nil},
		{"no idclient is routed", func(e *codec.Event) { e.UserAttributes = nil }, "fitness", nil},
		{"no integration", func(e *codec.Event) { e.AppID = "com.other" }, "", pipeline.ErrNoIntegration},
		{"disabled", func(e *codec.Event) { e.AppID = fixture.AppGames }, "", pipeline.ErrIntegrationDisabled},
		{"environment", func(e *codec.Event) { e.Environment = "SANDBOX" }, "", pipeline.ErrEnvironmentDisabled},
		{"event", func(e *codec.Event) { e.EventName = "TRANSACTION_PROCESSED" }, "", pipeline.ErrEventNotEnabled},
		// Precedence: a disabled integration is reported before its events.
		{"disabled before event", func(e *codec.Event) { e.AppID, e.EventName = fixture.AppGames, "NOPE" }, "", pipeline.ErrIntegrationDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := base()
			tt.change(&ev)
			r, err := in.Route(&ev)
			if err != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if (r == nil) != (tt.wantSite == "") || (r != nil && r.Site().Integration != tt.wantSite) {
				t.Fatalf("route %+v, want site %q", r, tt.wantSite)
			}
		})
	}
}

// TestMapOwnsIDClient: the hit's visitor id is its own copy, not the
// event's string — an event's strings share the record's decode buffer
// (codec.Decoder.DecodeInto), which a batched hit must not keep alive, and
// which the next decode may reuse. The id is taken from a buffer that is
// then overwritten. Mutation caught: Map setting h.IDClient = id.
func TestMapOwnsIDClient(t *testing.T) {
	in := compile(t)
	ev := base()
	buf := []byte("idc-shared")
	ev.UserAttributes = map[string]string{"at_internet_id_client": unsafe.String(&buf[0], len(buf))}
	r, err := in.Route(&ev)
	if err != nil {
		t.Fatal(err)
	}
	h := &pipeline.Hit{}
	if _, err := r.Map(&ev, h); err != nil {
		t.Fatal(err)
	}
	copy(buf, "xxxxxxxxxx")
	if h.IDClient != "idc-shared" {
		t.Fatalf("IDClient = %q after the event's buffer changed, want idc-shared", h.IDClient)
	}
}

// TestMap: Map alone, on the fitness route: the exact properties in send
// order, the visitor id, what it reports, and that it writes nothing of a
// hit it drops.
func TestMap(t *testing.T) {
	in := compile(t)
	ev := base()
	r, err := in.Route(&ev)
	if err != nil {
		t.Fatal(err)
	}
	h := &pipeline.Hit{Props: make([]pipeline.Prop, 0, 64)}
	props := h.Props[:1]
	rep, err := r.Map(&ev, h)
	if err != nil || rep != (pipeline.Report{}) {
		t.Fatalf("Map = %+v, %v", rep, err)
	}
	var got []string
	for _, p := range h.Props {
		got = append(got, p.Key)
	}
	want := []string{"event_id", "purchasely_event", "event_date", "app_id", "environment", "user_id", "store", "product", "plan_id",
		"offer_type", "plan_price", "currency", "is_family_shared", "app_name", "tier"}
	if !slices.Equal(got, want) {
		t.Errorf("keys %v,\nwant %v", got, want)
	}
	if h.Site != r.Site() || h.Name != "subscription.started" || h.IDClient != "idc-1" || h.Event != nil {
		t.Errorf("hit %q %q site %v event %v", h.Name, h.IDClient, h.Site, h.Event)
	}
	if &props[0] != &h.Props[0] {
		t.Error("Map did not reuse the hit's Props")
	}
	// The event's date (its text) and the hit's copy of the visitor id
	// are the two allocations.
	if n := testing.AllocsPerRun(100, func() { _, _ = r.Map(&ev, h) }); n > 2 {
		t.Errorf("Map allocates %v times, want at most 2", n)
	}

	long := base()
	long.Placement, long.Presentation = strings.Repeat("x", 300), strings.Repeat("é", 256)
	long.AmountInCustomerCurrency, long.PlanPriceInCustomerCurrency = codec.Some(-2e15), codec.Some(math.NaN())
	long.CumulatedRevenuesInUSD = codec.Some(1e15) // the limit itself is sent
	rep, err = r.Map(&long, h)
	if err != nil || rep != (pipeline.Report{Truncated: 2, OutOfRange: 2}) {
		t.Errorf("Map of long values = %+v, %v; want 2 truncated, 2 out of range", rep, err)
	}

	for _, tt := range []struct {
		name   string
		change func(*codec.Event)
		want   error
	}{
		{"no idclient", func(e *codec.Event) { e.UserAttributes = nil }, pipeline.ErrNoIDClient},
		{"empty idclient", func(e *codec.Event) { e.UserAttributes["at_internet_id_client"] = "" }, pipeline.ErrNoIDClient},
		{"event the route does not send", func(e *codec.Event) { e.EventName = "TRANSACTION_PROCESSED" }, pipeline.ErrEventNotEnabled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ev := base()
			tt.change(&ev)
			h := &pipeline.Hit{}
			rep, err := r.Map(&ev, h)
			if err != tt.want || rep != (pipeline.Report{}) {
				t.Fatalf("Map = %+v, %v; want %v", rep, err, tt.want)
			}
			if h.Site != nil || h.Name != "" || h.IDClient != "" || h.Props != nil {
				t.Fatalf("a dropped hit was written: %+v", h)
			}
		})
	}
}

// TestChainStages: custom stages run after Map, in order, each wrapped by
// the middlewares (the first outermost); a stage's error stops the chain and
// comes back with Map's report; an event Route drops runs no stage.
func TestChainStages(t *testing.T) {
	in := compile(t)
	var trail []string
	stage := func(name string, err error) pipeline.Stage {
		return pipeline.StageFunc(func(_ context.Context, h *pipeline.Hit) error {
			trail = append(trail, name+":"+h.Name)
			return err
		})
	}
	mw := func(name string) pipeline.Middleware {
		return func(next pipeline.Stage) pipeline.Stage {
			return pipeline.StageFunc(func(ctx context.Context, h *pipeline.Hit) error {
				trail = append(trail, name)
				return next.Process(ctx, h)
			})
		}
	}
	dup := &pipeline.Dropped{Reason: "duplicate"}
	chain := pipeline.NewChain(in, []pipeline.Stage{stage("a", nil), stage("b", dup), stage("c", nil)}, mw("outer"), mw("inner"))

	ev := base()
	ev.Placement = strings.Repeat("x", 256)
	rep, err := chain.Process(context.Background(), &pipeline.Hit{Event: &ev})
	if err != dup || rep.Truncated != 1 {
		t.Fatalf("Process = %+v, %v; want the stage's drop with Map's report", rep, err)
	}
	if want := []string{"outer", "inner", "a:subscription.started", "outer", "inner", "b:subscription.started"}; !slices.Equal(trail, want) {
		t.Fatalf("trail %v, want %v", trail, want)
	}

	trail = nil
	ev.AppID = "com.other"
	if _, err := chain.Process(context.Background(), &pipeline.Hit{Event: &ev}); err != pipeline.ErrNoIntegration || len(trail) != 0 {
		t.Fatalf("unrouted event: %v, stages ran: %v", err, trail)
	}
}

// TestWebhookAttributesAreSent: the Purchasely webhook attributes added to
// the schema become properties under their Piano keys, typed, and are left
// out when null. Mutations caught: "device_type" mapped to "" in pianoKeys
// (not sent); original_purchased_at_ms sent as epoch milliseconds.
func TestWebhookAttributesAreSent(t *testing.T) {
	in := compile(t)
	ev := base()
	ev.ContentID, ev.DeviceType, ev.StoreProductID = "article_1234", "PAD", "com.example.premium.monthly"
	ev.OriginalPurchasedAt = codec.Some(time.Date(2025, 3, 4, 5, 6, 7, 8e6, time.UTC))
	ev.CumulatedRevenuesInUSD = codec.Some(69.9)
	h, _, err := run(t, in, ev)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]pipeline.Value{
		"content_id":                pipeline.String("article_1234"),
		"purchasely_device_type":    pipeline.String("PAD"),
		"store_product_id":          pipeline.String("com.example.premium.monthly"),
		"original_purchase_date":    pipeline.String("2025-03-04T05:06:07.008Z"),
		"cumulated_revenues_in_usd": pipeline.Float(69.9),
	}
	props := map[string]pipeline.Value{}
	for _, p := range h.Props {
		props[p.Key] = p.Value
	}
	for k, v := range want {
		if props[k] != v {
			t.Errorf("%s = %+v, want %+v", k, props[k], v)
		}
	}
	h, _, err = run(t, in, base()) // the same attributes, null
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range h.Props {
		if _, ok := want[p.Key]; ok {
			t.Errorf("null %s sent as %+v", p.Key, p.Value)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name   string
		change func(*pipeline.Integration)
		want   string
	}{
		{"unknown rename source", func(c *pipeline.Integration) { c.Properties.Rename = map[string]string{"foo": "bar"} }, "integrations[0].properties.rename.foo: not a property atrelay sends"},
		{"bad override", func(c *pipeline.Integration) { c.EventNames = map[string]string{"TRIAL_STARTED": "Trial Started"} }, `integrations[0].event_names.TRIAL_STARTED: "Trial Started" must start with a lowercase letter`},
		{"static collides", func(c *pipeline.Integration) { c.Properties.Static = map[string]any{"store": "x"} }, "integrations[0].properties.static.store: collides with a derived property"},
		{"two renames onto one key", func(c *pipeline.Integration) { c.Properties.Rename = map[string]string{"plan": "p", "product": "p"} }, `would both be sent as "p"`},
		{"unknown drop", func(c *pipeline.Integration) { c.Properties.Drop = []string{"nope"} }, `integrations[0].properties.drop[0]: "nope" is not a property atrelay sends`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfgs := fixture.Integrations("logs1.xiti.com")
			tt.change(&cfgs[0])
			_, err := pipeline.Compile(cfgs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	d := pipeline.Describe(compile(t))
	if len(d) != 3 || d[0].Integration != "fitness" || d[2].Enabled {
		t.Fatalf("Describe() = %+v", d)
	}
	f := d[0]
	if f.Events["SUBSCRIPTION_STARTED"] != "subscription.started" || f.Events["TRIAL_STARTED"] != "trial_started" ||
		f.Properties["plan_id"] != "string" || f.Properties["event_date"] != "date" || f.Properties["tier"] != "integer" ||
		f.Properties["plan_price"] != "decimal" || f.Endpoint != "https://logs1.xiti.com/subscription" {
		t.Fatalf("fitness description: %+v", f)
	}
	if _, ok := f.Properties["plan"]; ok {
		t.Fatal("renamed key still described")
	}
	// What `atrelay check` lists for the webhook attributes (it prints Describe).
	for k, typ := range map[string]string{"content_id": "string", "purchasely_device_type": "string", "store_product_id": "string",
		"original_purchase_date": "date", "cumulated_revenues_in_usd": "decimal"} {
		if f.Properties[k] != typ {
			t.Errorf("Properties[%q] = %q, want %q", k, f.Properties[k], typ)
		}
	}
	// Every derived property is described: all but the dropped
	// ab_test_variant, plus the two static ones.
	if got, want := len(f.Properties), len(pipeline.DerivedKeys())-1+2; got != want {
		t.Errorf("%d properties described, want %d: %v", got, want, f.Properties)
	}
}

func BenchmarkStages(b *testing.B) {
	in := compile(b)
	chain := pipeline.NewChain(in, nil)
	ev := fixture.Generate(fixture.Options{Seed: 1, Events: 1, Apps: []string{fixture.AppFitness}, SandboxShare: -1, NoIDClientShare: -1, OnlyTableEvents: true})[0]
	h := &pipeline.Hit{}
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		h.Event = &ev
		if _, err := chain.Process(context.Background(), h); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleRoute_Map() {
	in, _ := pipeline.Compile([]pipeline.Integration{{
		Name: "app", AppID: "com.example.app", SiteID: 1, CollectDomain: "logs1.xiti.com", CollectPath: "event",
		Environments: []string{"PRODUCTION"}, Events: []string{"TRIAL_STARTED"}, IDClientFrom: []string{"user_id"},
		Properties: pipeline.Properties{Drop: []string{"store", "product", "plan", "offer_type", "is_family_shared", "purchasely_event", "environment", "app_id"}},
	}})
	ev := codec.Event{EventID: "e-1", EventName: "TRIAL_STARTED", AppID: "com.example.app", Environment: "PRODUCTION",
		UserID: "u-7", EventCreatedAt: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), Store: "STRIPE", Product: "p", Plan: "m", OfferType: "NONE"}
	r, _ := in.Route(&ev)
	h := &pipeline.Hit{Event: &ev}
	_, _ = r.Map(&ev, h)
	fmt.Println(h.Name, h.IDClient)
	for _, p := range h.Props {
		fmt.Println(p.Key, p.Value.Str)
	}
	// Output:
	// trial_started u-7
	// event_id e-1
	// event_date 2026-11-01T09:00:00.000Z
	// user_id u-7
}
