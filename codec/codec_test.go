package codec_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/linkedin/goavro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/fixture"
	"github.com/atrelay/atrelay/schemas"
)

const schemaID = 7

// registry returns a fake registry holding the embedded schema under
// schemaID, and a client for it.
func registry(t testing.TB) (*srfake.Registry, *sr.Client) {
	t.Helper()
	reg := srfake.New()
	t.Cleanup(reg.Close)
	reg.SeedSchema("purchasely.subscription-events-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return reg, cl
}

func events(n int) []codec.Event {
	return fixture.Generate(fixture.Options{Seed: 42, Events: n})
}

func TestRoundTripEachFraming(t *testing.T) {
	_, cl := registry(t)
	enc := fixture.MustEncoder("")
	evs := events(300)
	tests := []struct {
		name    string
		framing codec.Framing
		encode  func(*codec.Event) []byte
	}{
		{"confluent", codec.FramingConfluent, func(e *codec.Event) []byte { return enc.Confluent(schemaID, e) }},
		{"single-object", codec.FramingSingleObject, enc.SingleObject},
		{"raw", codec.FramingRaw, enc.Raw},
		{"auto/confluent", codec.FramingAuto, func(e *codec.Event) []byte { return enc.Confluent(schemaID, e) }},
		{"auto/single-object", codec.FramingAuto, enc.SingleObject},
		{"auto/raw", codec.FramingAuto, enc.Raw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := codec.New(tt.framing, cl, "")
			if err != nil {
				t.Fatal(err)
			}
			var got codec.Event
			for i := range evs {
				want := &evs[i]
				if err := d.DecodeInto(context.Background(), tt.encode(want), &got); err != nil {
					t.Fatalf("event %d: %v", i, err)
				}
				if !reflect.DeepEqual(&got, want) {
					t.Fatalf("event %d:\n got %+v\nwant %+v", i, got, *want)
				}
			}
		})
	}
}

// withoutField returns the embedded schema with a field removed.
func withoutField(t testing.TB, field string) string {
	t.Helper()
	s := schemas.SubscriptionEvent()
	lines := strings.Split(s, "\n")
	out := lines[:0]
	for _, l := range lines {
		if !strings.Contains(l, `"name": "`+field+`"`) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestSchemaEvolution(t *testing.T) {
	ev := events(1)[0]
	ev.Placement = "onboarding"
	extra := strings.Replace(schemas.SubscriptionEvent(), `{"name": "audience"`,
		`{"name": "loyalty_tier", "type": "string", "default": "gold"},
    {"name": "audience"`, 1)
	tests := []struct {
		name    string
		schema  string
		check   func(t *testing.T, got *codec.Event)
		wantErr error
	}{
		{"older writer without an optional field", withoutField(t, "placement"), func(t *testing.T, got *codec.Event) {
			if got.Placement != "" {
				t.Fatalf("Placement = %q, want empty (null)", got.Placement)
			}
			if got.EventID != ev.EventID || got.Plan != ev.Plan {
				t.Fatalf("other fields lost: %+v", got)
			}
		}, nil},
		{"newer writer with an extra field", extra, func(t *testing.T, got *codec.Event) {
			if !reflect.DeepEqual(*got, ev) {
				t.Fatalf("got %+v\nwant %+v", *got, ev)
			}
		}, nil},
		{"writer without a required field", withoutField(t, "app_id"), nil, codec.ErrMissingField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, cl := registry(t)
			reg.SeedSchema("evolved-value", 1, 100, sr.Schema{Schema: tt.schema, Type: sr.TypeAvro})
			d, err := codec.New(codec.FramingAuto, cl, "")
			if err != nil {
				t.Fatal(err)
			}
			enc := fixture.MustEncoder(tt.schema)
			got, err := d.Decode(context.Background(), enc.Confluent(100, &ev))
			if tt.wantErr != nil {
				var pe *codec.PermanentError
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &pe) {
					t.Fatalf("err = %v, want permanent %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), "app_id") {
					t.Fatalf("error %q does not name the field", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
			// The single-object framing finds the schema the registry gave.
			if _, err := d.Decode(context.Background(), enc.SingleObject(&ev)); err != nil {
				t.Fatalf("single-object with a registry schema: %v", err)
			}
		})
	}
}

func TestErrorClasses(t *testing.T) {
	enc := fixture.MustEncoder("")
	ev := events(1)[0]
	fail := func(status int) *sr.Client {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error_code":50001,"message":"boom"}`, status)
		}))
		t.Cleanup(srv.Close)
		cl, _ := sr.NewClient(sr.URLs(srv.URL))
		return cl
	}
	down := func() *sr.Client {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close() // nothing listens there any more
		cl, _ := sr.NewClient(sr.URLs(url))
		return cl
	}
	_, good := registry(t)
	tests := []struct {
		name      string
		reg       *sr.Client
		framing   codec.Framing
		value     []byte
		transient bool
		sentinel  error
		reason    string
	}{
		{"registry down", down(), codec.FramingAuto, enc.Confluent(schemaID, &ev), true, nil, ""},
		{"registry 503", fail(503), codec.FramingAuto, enc.Confluent(schemaID, &ev), true, nil, ""},
		{"unknown schema id", good, codec.FramingAuto, enc.Confluent(12345, &ev), false, codec.ErrUnknownSchema, "unknown_schema"},
		{"unknown fingerprint", good, codec.FramingAuto, append([]byte{0xC3, 0x01, 1, 2, 3, 4, 5, 6, 7, 8}, enc.Raw(&ev)...), false, codec.ErrUnknownSchema, "unknown_schema"},
		{"truncated", good, codec.FramingAuto, enc.Corrupt(fixture.CorruptTruncated, &ev), false, codec.ErrCorrupt, "corrupt"},
		{"garbage", good, codec.FramingRaw, enc.Corrupt(fixture.CorruptGarbage, &ev), false, codec.ErrCorrupt, "corrupt"},
		{"trailing bytes", good, codec.FramingRaw, append(enc.Raw(&ev), 0, 0), false, codec.ErrCorrupt, "corrupt"},
		{"confluent framing, raw value", good, codec.FramingConfluent, []byte{0x02, 0x41}, false, codec.ErrBadFraming, "bad_framing"},
		{"single-object framing, short value", good, codec.FramingSingleObject, []byte{0xC3}, false, codec.ErrBadFraming, "bad_framing"},
		{"empty value", good, codec.FramingAuto, nil, false, codec.ErrCorrupt, "corrupt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := codec.New(tt.framing, tt.reg, "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.Decode(context.Background(), tt.value)
			var te *codec.TransientError
			var pe *codec.PermanentError
			switch {
			case err == nil:
				t.Fatal("decoded a bad record")
			case tt.transient:
				if !errors.As(err, &te) || errors.As(err, &pe) {
					t.Fatalf("err = %v (%T), want transient only", err, err)
				}
			default:
				if !errors.As(err, &pe) || errors.As(err, &te) {
					t.Fatalf("err = %v (%T), want permanent only", err, err)
				}
				if !errors.Is(err, tt.sentinel) || pe.Reason() != tt.reason {
					t.Fatalf("err = %v reason %q, want %v / %q", err, pe.Reason(), tt.sentinel, tt.reason)
				}
			}
		})
	}
}

// TestRegistryErrorsHideCredentials: with credentials in the registry URL
// (issue 9), a registry that is down or answers 500 gives a TransientError
// that names the host but not the password, with the chain intact.
// Mutations caught (each tried): without redact.Error in byRegistryID the
// "client built by the caller" rows leak (sr quotes the request URL);
// without moving the userinfo out of the URL in RegistryClient, the
// ResponseError's URL field keeps the password.
func TestRegistryErrorsHideCredentials(t *testing.T) {
	const password = "s3cr3t-pw"
	enc := fixture.MustEncoder("")
	ev := events(1)[0]
	value := enc.Confluent(schemaID, &ev)
	withCreds := func(u string) string { return strings.Replace(u, "http://", "http://svc:"+password+"@", 1) }
	down := func() string {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close() // nothing listens there any more
		return srv.URL
	}
	failing := func() string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error_code":50001,"message":"boom at `+withCreds("http://"+r.Host)+`"}`, http.StatusInternalServerError)
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	fromConfig := func(u string) (*codec.Decoder, error) {
		return codec.FromConfig(codec.Config{Framing: "confluent", SchemaRegistry: codec.SchemaRegistry{URL: withCreds(u)}})
	}
	byCaller := func(u string) (*codec.Decoder, error) {
		cl, err := sr.NewClient(sr.URLs(withCreds(u)))
		if err != nil {
			return nil, err
		}
		return codec.New(codec.FramingConfluent, cl, "")
	}
	tests := []struct {
		name     string
		url      string
		build    func(string) (*codec.Decoder, error)
		owned    bool // codec built the client: not even sr holds the password
		response bool // the registry answered: errors.As finds its *sr.ResponseError
	}{
		{"down, FromConfig", down(), fromConfig, true, false},
		{"down, client built by the caller", down(), byCaller, false, false},
		{"500, FromConfig", failing(), fromConfig, true, true},
		{"500, client built by the caller", failing(), byCaller, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := tt.build(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			_, err = d.Decode(context.Background(), value)
			var te *codec.TransientError
			if !errors.As(err, &te) {
				t.Fatalf("err = %v (%T), want a TransientError", err, err)
			}
			host := strings.TrimPrefix(tt.url, "http://")
			if msg := err.Error(); strings.Contains(msg, password) || !strings.Contains(msg, host) {
				t.Fatalf("error text must name %s but not the password:\n%s", host, msg)
			}
			var re *sr.ResponseError
			if errors.As(err, &re) != tt.response {
				t.Fatalf("errors.As(*sr.ResponseError) = %v, want %v: %v", !tt.response, tt.response, err)
			}
			if tt.owned && tt.response && strings.Contains(re.URL, password) {
				t.Fatalf("ResponseError.URL holds the password: %s", re.URL)
			}
		})
	}
}

// TestRegistryCredentialsFromURL: credentials moved out of the URL still
// authenticate, and an explicit username wins over the URL's, as in net/http.
// Mutation caught (tried): dropping the userinfo without turning it into
// basic auth gets 401 in the first row.
func TestRegistryCredentialsFromURL(t *testing.T) {
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:p@ss:w/rd"))
	reg := srfake.New(srfake.WithAuth(auth))
	t.Cleanup(reg.Close)
	reg.SeedSchema("s-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	enc := fixture.MustEncoder("")
	ev := events(1)[0]
	withUser := strings.Replace(reg.URL(), "http://", "http://svc:p%40ss:w%2Frd@", 1)
	tests := []struct {
		name string
		reg  codec.SchemaRegistry
	}{
		{"userinfo", codec.SchemaRegistry{URL: withUser}},
		{"username wins", codec.SchemaRegistry{URL: strings.Replace(reg.URL(), "http://", "http://wrong:creds@", 1), Username: "svc", Password: "p@ss:w/rd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := codec.FromConfig(codec.Config{Framing: "confluent", SchemaRegistry: tt.reg})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.Decode(context.Background(), enc.Confluent(schemaID, &ev)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestConcurrentLookupsMakeOneRequest(t *testing.T) {
	reg := srfake.New()
	t.Cleanup(reg.Close)
	reg.SeedSchema("s-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	var requests atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		<-release // hold the first lookup until every decoder is waiting on it
		reg.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cl, _ := sr.NewClient(sr.URLs(srv.URL))
	d, err := codec.New(codec.FramingConfluent, cl, "")
	if err != nil {
		t.Fatal(err)
	}
	enc := fixture.MustEncoder("")
	ev := events(1)[0]
	value := enc.Confluent(schemaID, &ev)
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := d.Decode(context.Background(), value)
			errs <- err
		})
	}
	// Let the request in only once it arrived: all goroutines are started;
	// those not yet in the singleflight find the cache filled afterwards.
	for requests.Load() == 0 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := requests.Load(); got != 1 {
		t.Fatalf("registry got %d requests for one id, want 1", got)
	}
}

// TestHostileLengthDoesNotAllocate feeds map and string lengths claiming
// about 2^31 items or bytes: decoding must fail without allocating them.
func TestHostileLengthDoesNotAllocate(t *testing.T) {
	d, err := codec.New(codec.FramingRaw, nil, `{"type":"record","name":"R","fields":[{"name":"m","type":{"type":"map","values":"string"}}]}`)
	if err != nil {
		t.Fatal(err)
	}
	huge := binary.AppendVarint(nil, 1<<31-1)
	values := map[string][]byte{
		"map block count": append(append([]byte{}, huge...), 0x02, 'k', 0x02, 'v'),
		"string length":   append(append([]byte{0x02}, huge...), 'x'),
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := d.Decode(context.Background(), v)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatal("decoded a hostile record")
			}
			if grown := after.TotalAlloc - before.TotalAlloc; grown > 64<<20 {
				t.Fatalf("decoding allocated %d MiB", grown>>20)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	enc := fixture.MustEncoder("")
	for i, ev := range events(4) {
		f.Add(enc.Raw(&ev))
		f.Add(enc.SingleObject(&ev))
		f.Add(enc.Confluent(schemaID, &ev))
		f.Add(enc.Corrupt(fixture.CorruptTruncated, &ev))
		_ = i
	}
	reg := srfake.New()
	defer reg.Close()
	reg.SeedSchema("s-value", 1, schemaID, sr.Schema{Schema: schemas.SubscriptionEvent(), Type: sr.TypeAvro})
	cl, _ := sr.NewClient(sr.URLs(reg.URL()))
	d, err := codec.New(codec.FramingAuto, cl, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		_, err := d.Decode(context.Background(), value)
		if err == nil {
			return
		}
		var te *codec.TransientError
		var pe *codec.PermanentError
		if errors.As(err, &te) == errors.As(err, &pe) {
			t.Fatalf("error is not exactly one of permanent or transient: %v (%T)", err, err)
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	_, cl := registry(b)
	enc := fixture.MustEncoder("")
	ev := events(1)[0]
	for _, bc := range []struct {
		name  string
		value []byte
	}{
		{"confluent", enc.Confluent(schemaID, &ev)},
		{"single-object", enc.SingleObject(&ev)},
		{"raw", enc.Raw(&ev)},
	} {
		// shared is the relay's call: the value is its own copy, so the
		// decoder makes none.
		for _, shared := range []bool{false, true} {
			name := bc.name
			if shared {
				name += "/shared"
			}
			b.Run(name, func(b *testing.B) {
				d, _ := codec.New(codec.FramingAuto, cl, "")
				decode := d.DecodeInto
				if shared {
					decode = d.DecodeIntoShared
				}
				var out codec.Event
				if err := decode(context.Background(), bc.value, &out); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := decode(context.Background(), bc.value, &out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkGoavroNativeFromBinary is the baseline: goavro alone on the same
// event, so the codec's own cost is the difference.
func BenchmarkGoavroNativeFromBinary(b *testing.B) {
	c, _ := goavro.NewCodec(schemas.SubscriptionEvent())
	ev := events(1)[0]
	value := fixture.MustEncoder("").Raw(&ev)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := c.NativeFromBinary(value); err != nil {
			b.Fatal(err)
		}
	}
}

func ExampleDecoder_Decode() {
	d, _ := codec.New(codec.FramingRaw, nil, "")
	ev := fixture.Generate(fixture.Options{Seed: 1, Events: 1})[0]
	got, _ := d.Decode(context.Background(), fixture.MustEncoder("").Raw(&ev))
	fmt.Println(got.EventName == ev.EventName, got.AppID == ev.AppID)

	_, err := d.Decode(context.Background(), []byte("not avro"))
	var pe *codec.PermanentError
	fmt.Println(errors.As(err, &pe), pe.Reason())
	// Output:
	// true true
	// true corrupt
}
