package pipeline_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func yes() *bool { b := true; return &b }
func no() *bool  { b := false; return &b }

func integrations(collect string) []config.Integration {
	return []config.Integration{
		{Name: "fitness", AppID: fixture.AppFitness, SiteID: 100001, CollectDomain: collect, CollectPath: "subscription",
			Environments: []string{"PRODUCTION"}, Events: fixture.TableEvents, IDClientFrom: []string{"attribute:at_internet_id_client"},
			EventNames: map[string]string{"SUBSCRIPTION_STARTED": "subscription.started"},
			Properties: config.Properties{Rename: map[string]string{"plan": "plan_id"}, Drop: []string{"ab_test_variant"}, Static: map[string]any{"app_name": "Fitness", "tier": 2}}},
		{Name: "news", AppID: fixture.AppNews, SiteID: 100002, CollectDomain: collect, CollectPath: "event", Enabled: yes(),
			Environments: []string{"PRODUCTION", "SANDBOX"}, Events: append(slices.Clone(fixture.TableEvents), fixture.OtherEvents...),
			IDClientFrom: []string{"attribute:at_internet_id_client", "user_id", "anonymous_user_id"}},
		{Name: "games", AppID: fixture.AppGames, SiteID: 100003, CollectDomain: collect, CollectPath: "event", Enabled: no(),
			Environments: []string{"PRODUCTION"}, Events: fixture.TableEvents, IDClientFrom: []string{"user_id"}},
	}
}

func compile(t testing.TB) *pipeline.Integrations {
	t.Helper()
	in, err := pipeline.Compile(integrations("logs1.xiti.com"))
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

func run(t testing.TB, in *pipeline.Integrations, ev codec.Event) (*pipeline.Hit, error) {
	h := &pipeline.Hit{Event: &ev}
	return h, pipeline.Chain(pipeline.Stages(in)).Process(context.Background(), h)
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
			_, err := run(t, in, ev)
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
			h, err := run(t, in, ev)
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
	h, _ := run(t, in, ev)
	if h.Truncated != 1 {
		t.Fatalf("Truncated = %d, want 1", h.Truncated)
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
	h, err := run(t, in, ev)
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
	h, err = run(t, in, base()) // the same attributes, null
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
		change func(*config.Integration)
		want   string
	}{
		{"unknown rename source", func(c *config.Integration) { c.Properties.Rename = map[string]string{"foo": "bar"} }, "integrations[0].properties.rename.foo: not a property atrelay sends"},
		{"bad override", func(c *config.Integration) { c.EventNames = map[string]string{"TRIAL_STARTED": "Trial Started"} }, `integrations[0].event_names.TRIAL_STARTED: "Trial Started" must start with a lowercase letter`},
		{"static collides", func(c *config.Integration) { c.Properties.Static = map[string]any{"store": "x"} }, "integrations[0].properties.static.store: collides with a derived property"},
		{"two renames onto one key", func(c *config.Integration) { c.Properties.Rename = map[string]string{"plan": "p", "product": "p"} }, `would both be sent as "p"`},
		{"unknown drop", func(c *config.Integration) { c.Properties.Drop = []string{"nope"} }, `integrations[0].properties.drop[0]: "nope" is not a property atrelay sends`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfgs := integrations("logs1.xiti.com")
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

// TestGolden sends 60 fixture events over 3 integrations through stages,
// batcher and sink to a collector, and compares every request (URL and body)
// with testdata/golden.txt. Run with -update to rewrite it.
func TestGolden(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.RequestURI()+"\n"+string(b)+"\n")
		mu.Unlock()
		w.WriteHeader(204)
	}))
	defer srv.Close()
	cfgs := integrations(srv.URL)
	cfgs[2].Enabled = yes() // all three sites receive hits here
	in, err := pipeline.Compile(cfgs)
	if err != nil {
		t.Fatal(err)
	}
	chain := pipeline.Chain(append(pipeline.Stages(in), pipeline.Named{Name: "encode", Stage: atinternet.Encoder()}))
	client := atinternet.NewClient(atinternet.Config{UserAgent: "atrelay/test", MaxRetries: 0})
	var reqs []pipeline.Request
	b := batch.New(batch.Config{MaxEvents: 1000, MaxBytes: 1 << 20, Linger: time.Hour}, func(_ *pipeline.Site, r []pipeline.Request) { reqs = append(reqs, r...) })
	events := fixture.Generate(fixture.Options{Seed: 7, Events: 60, EventsPerVisitor: 3, Apps: []string{fixture.AppFitness, fixture.AppNews, fixture.AppGames}, SandboxShare: -1, NoIDClientShare: -1})
	for i := range events {
		h := &pipeline.Hit{Event: &events[i]}
		if err := chain.Process(context.Background(), h); err == nil {
			b.Add(h)
		}
	}
	b.Close()
	for _, r := range reqs { // sequentially, so the golden file has a stable order
		if s := client.Send(context.Background(), r); s.Outcome != pipeline.Delivered {
			t.Fatalf("request not delivered: %s %s: %v", s.Outcome, s.Reason, s.Err)
		}
	}
	slices.Sort(got) // Flush visits sites in map order
	text := strings.Join(got, "\n")
	const golden = "testdata/golden.txt"
	if *update {
		if err := os.WriteFile(golden, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if text != string(want) {
		t.Fatalf("requests differ from %s (run with -update after checking):\n%s", golden, text)
	}
	sites := map[string]bool{}
	for _, g := range got {
		sites[strings.SplitN(g, "&", 2)[0]] = true
	}
	if len(got) < 10 || len(sites) != 3 {
		t.Fatalf("golden covers %d requests to %d sites", len(got), len(sites))
	}
}

func BenchmarkStages(b *testing.B) {
	in := compile(b)
	chain := pipeline.Chain(append(pipeline.Stages(in), pipeline.Named{Name: "encode", Stage: atinternet.Encoder()}))
	ev := fixture.Generate(fixture.Options{Seed: 1, Events: 1, Apps: []string{fixture.AppFitness}, SandboxShare: -1, NoIDClientShare: -1, OnlyTableEvents: true})[0]
	h := &pipeline.Hit{}
	b.ReportAllocs()
	for b.Loop() {
		h.Reset()
		h.Event = &ev
		if err := chain.Process(context.Background(), h); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleEnrich() {
	in, _ := pipeline.Compile([]config.Integration{{
		Name: "app", AppID: "com.example.app", SiteID: 1, CollectDomain: "logs1.xiti.com", CollectPath: "event",
		Environments: []string{"PRODUCTION"}, Events: []string{"TRIAL_STARTED"}, IDClientFrom: []string{"user_id"},
		Properties: config.Properties{Drop: []string{"store", "product", "plan", "offer_type", "is_family_shared", "purchasely_event", "environment", "app_id"}},
	}})
	ev := codec.Event{EventID: "e-1", EventName: "TRIAL_STARTED", AppID: "com.example.app", Environment: "PRODUCTION",
		UserID: "u-7", EventCreatedAt: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC), Store: "STRIPE", Product: "p", Plan: "m", OfferType: "NONE"}
	h := &pipeline.Hit{Event: &ev}
	_ = pipeline.Chain(pipeline.Stages(in)).Process(context.Background(), h)
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
