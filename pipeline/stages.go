package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/piano"
)

// derived is one property atrelay computes from every event, in send order.
type derived struct {
	key  string // Piano key before any rename
	kind string // for Describe: string, integer, decimal, boolean, date
	get  func(ev *codec.Event) (Value, bool)
}

// dateLayout is RFC 3339 with milliseconds, in UTC.
const dateLayout = "2006-01-02T15:04:05.000Z07:00"

// pianoKeys maps every event field (codec.Fields, generated from the schema)
// to the Piano property key it is sent as; "" keeps it out of the hits. It
// is the one hand-written column of derivedProps: the order, the type and
// the value come from the schema. A schema field missing here stops the
// program at start-up, so that sending a new field is a decision.
var pianoKeys = map[string]string{
	"event_id":                        "event_id",
	"event_name":                      "purchasely_event",
	"event_created_at_ms":             "event_date", // Piano dates a hit on arrival: this keeps replays analysable
	"api_version":                     "",           // Purchasely's webhook version, not the event's
	"app_id":                          "app_id",
	"environment":                     "environment",
	"user_id":                         "user_id", // Piano's standard user property
	"anonymous_user_id":               "",        // a visitor id source (idclient_from), not a property
	"user_attributes":                 "",        // a visitor id source (idclient_from), not a property
	"store":                           "store",
	"store_country":                   "store_country",
	"product":                         "product",
	"plan":                            "plan",
	"previous_plan":                   "previous_plan",
	"offer_identifier":                "offer_identifier",
	"offer_type":                      "offer_type",
	"plan_price_in_customer_currency": "plan_price",
	"customer_currency":               "currency",
	"amount_in_customer_currency":     "amount",
	"purchased_at_ms":                 "purchase_date",
	"next_renewal_at_ms":              "next_renewal_date",
	"subscription_status":             "subscription_status",
	"is_family_shared":                "is_family_shared",
	"store_transaction_id":            "store_transaction_id",
	"store_original_transaction_id":   "store_original_transaction_id",
	"purchasely_subscription_id":      "purchasely_subscription_id",
	"placement":                       "placement",
	"presentation":                    "presentation",
	"ab_test":                         "ab_test",
	"ab_test_variant":                 "ab_test_variant",
	"audience":                        "audience",
	"content_id":                      "content_id",
	"device_type":                     "purchasely_device_type", // Piano's standard device_type comes from the user agent
	"store_product_id":                "store_product_id",
	"original_purchased_at_ms":        "original_purchase_date",
	"cumulated_revenues_in_usd":       "cumulated_revenues_in_usd",
}

// derivedProps are the properties of every hit, in send order (the
// schema's); each is left out when its source is null or empty.
var derivedProps = mustDerive(codec.Fields(), pianoKeys)

func mustDerive(fields []codec.FieldInfo, keys map[string]string) []derived {
	d, err := derive(fields, keys)
	if err != nil {
		// The table is compiled in: failing here is a programming error
		// that every test of this package shows.
		panic("pipeline: derived properties: " + err.Error())
	}
	return d
}

// derive builds the derived properties of the event fields that keys sends.
// Every field must have an entry in keys, every entry must be a field, every
// key must be a valid Piano key used once, and a key Piano reads as a date
// must hold a time and the other way round.
func derive(fields []codec.FieldInfo, keys map[string]string) ([]derived, error) {
	var out []derived
	var errs []error
	known, sent := map[string]bool{}, map[string]string{}
	for _, f := range fields {
		known[f.Name] = true
		key, ok := keys[f.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("schema field %s has no Piano key (\"\" to not send it)", f.Name))
			continue
		}
		if key == "" {
			continue
		}
		if other, dup := sent[key]; dup {
			errs = append(errs, fmt.Errorf("%s and %s are both sent as %q", other, f.Name, key))
			continue
		}
		sent[key] = f.Name
		if err := piano.CheckKey(key); err != nil {
			errs = append(errs, fmt.Errorf("%s: Piano key %q %w", f.Name, key, err))
			continue
		}
		if (f.Kind == codec.KindTime) != piano.IsDateKey(key) {
			errs = append(errs, fmt.Errorf("%s: Piano key %q: only a time field goes in a key Piano reads as a date (_date, _utc, _ts, _timestamp)", f.Name, key))
			continue
		}
		d, err := property(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.key = key
		out = append(out, d)
	}
	for _, name := range slices.Sorted(maps.Keys(keys)) {
		if !known[name] {
			errs = append(errs, fmt.Errorf("%s: not a field of the event schema", name))
		}
	}
	return out, errors.Join(errs...)
}

// formatDate returns t in UTC as dateLayout does — 2026-11-01T09:00:00.123Z,
// milliseconds cut, not rounded — without reading the layout each time: an
// event has up to four dates, and time.Format spent more on the layout than
// on the digits. Years outside 0..9999, which the layout writes otherwise,
// go through time.Format.
func formatDate(t time.Time) string {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Format(dateLayout)
	}
	hour, minute, sec := t.Clock()
	var b [len("2006-01-02T15:04:05.000Z")]byte
	put := func(at, v, digits int) {
		for i := at + digits - 1; i >= at; i-- {
			b[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, year, 4)
	b[4] = '-'
	put(5, int(month), 2)
	b[7] = '-'
	put(8, day, 2)
	b[10] = 'T'
	put(11, hour, 2)
	b[13] = ':'
	put(14, minute, 2)
	b[16] = ':'
	put(17, sec, 2)
	b[19] = '.'
	put(20, t.Nanosecond()/1e6, 3)
	b[23] = 'Z'
	return string(b[:])
}

// property returns how a field of each kind becomes a Piano value: strings
// and nulls are left out when empty, dates are RFC 3339 in UTC.
func property(f codec.FieldInfo) (derived, error) {
	switch f.Kind {
	case codec.KindString:
		get := f.StringOf
		return derived{kind: "string", get: func(ev *codec.Event) (Value, bool) {
			s := get(ev)
			return String(s), s != ""
		}}, nil
	case codec.KindTime:
		get := f.TimeOf
		return derived{kind: "date", get: func(ev *codec.Event) (Value, bool) {
			t := get(ev)
			if !t.Valid {
				return Value{}, false
			}
			return String(formatDate(t.Value)), true
		}}, nil
	case codec.KindDouble:
		get := f.DoubleOf
		return derived{kind: "decimal", get: func(ev *codec.Event) (Value, bool) {
			n := get(ev)
			return Float(n.Value), n.Valid
		}}, nil
	case codec.KindBool:
		get := f.BoolOf
		return derived{kind: "boolean", get: func(ev *codec.Event) (Value, bool) { return Bool(get(ev)), true }}, nil
	case codec.KindInt:
		get := f.IntOf
		return derived{kind: "integer", get: func(ev *codec.Event) (Value, bool) { return Int(get(ev)), true }}, nil
	}
	return derived{}, fmt.Errorf("%s: a %s field cannot be a Piano property", f.Name, f.Kind)
}

// DerivedKeys returns the keys of the properties atrelay derives from every
// event, in send order, before any rename or drop. event_date always holds
// the event's creation time (RFC 3339): Piano dates a hit on arrival, so this
// is what keeps replays analysable.
func DerivedKeys() []string {
	keys := make([]string, len(derivedProps))
	for i, d := range derivedProps {
		keys[i] = d.key
	}
	return keys
}

// idSource is one place the visitor id may come from.
type idSource struct {
	attribute string // attribute:<name>; "" for the fields below
	field     string // user_id or anonymous_user_id
}

// Route is one compiled integration: where its events go and how they are
// mapped, built once by Compile. It is read-only and safe for concurrent use.
type Route struct {
	site         Site
	enabled      bool
	environments map[string]bool
	names        map[string]string // enabled Purchasely name -> Piano name
	keys         []string          // per derived property: key sent, "" when dropped
	static       []Prop
	idclient     []idSource
}

// Integrations are the compiled integrations, routed by app id. They are
// read-only once compiled and safe for concurrent use.
type Integrations struct {
	byApp map[string]*Route
	list  []*Route
}

// Compile builds the integrations' routing and key tables. It accepts what
// ValidateAll accepts (after Integration.Default) and returns its error
// otherwise: every rule lives there, so that `atrelay check` and the
// service agree.
func Compile(cfgs []Integration) (*Integrations, error) {
	cfgs = slices.Clone(cfgs)
	for i := range cfgs {
		cfgs[i].Default()
	}
	if err := ValidateAll(cfgs); err != nil {
		return nil, fielderr.Prefix("integrations", err)
	}
	in := &Integrations{byApp: make(map[string]*Route, len(cfgs))}
	for i := range cfgs {
		c := &cfgs[i]
		endpoint, _, _ := c.Endpoint()
		r := &Route{
			site:         Site{Integration: c.Name, ID: c.SiteID, Endpoint: endpoint, OnReject: c.OnReject},
			enabled:      c.IsEnabled(),
			environments: map[string]bool{},
			names:        map[string]string{},
		}
		for _, e := range c.Environments {
			r.environments[e] = true
		}
		for _, e := range c.Events {
			r.names[e] = piano.DefaultEventName(e)
			if o, ok := c.EventNames[e]; ok {
				r.names[e] = o
			}
		}
		r.keys, _ = c.Properties.keys()
		for _, k := range slices.Sorted(maps.Keys(c.Properties.Static)) {
			v, _ := staticValue(c.Properties.Static[k])
			r.static = append(r.static, Prop{Key: k, Value: v})
		}
		for _, s := range c.IDClientFrom {
			src, _ := parseIDSource(s)
			r.idclient = append(r.idclient, src)
		}
		in.byApp[c.AppID] = r
		in.list = append(in.list, r)
	}
	return in, nil
}

// Route returns the integration ev goes to, by app id. It drops (with a
// reason, in this order of precedence) events of apps with no integration
// (ErrNoIntegration), of disabled integrations (ErrIntegrationDisabled), of
// environments not enabled (ErrEnvironmentDisabled) and of event names not
// enabled (ErrEventNotEnabled).
func (in *Integrations) Route(ev *codec.Event) (*Route, error) {
	r := in.byApp[ev.AppID]
	switch {
	case r == nil:
		return nil, ErrNoIntegration
	case !r.enabled:
		return nil, ErrIntegrationDisabled
	case !r.environments[ev.Environment]:
		return nil, ErrEnvironmentDisabled
	}
	if _, ok := r.names[ev.EventName]; !ok {
		return nil, ErrEventNotEnabled
	}
	return r, nil
}

// Site returns the Piano site the route's events go to.
func (r *Route) Site() *Site { return &r.site }

// Report is what Map changed in an event's values to fit Piano's limits;
// the service counts it.
type Report struct {
	// Truncated counts the strings cut to piano.MaxStringLen characters.
	Truncated int
	// OutOfRange counts the decimals left out for being NaN or beyond
	// ±piano.MaxDecimal.
	OutOfRange int
}

// Map builds h from ev, an event Route returned r for: the site; the Piano
// event name (the integration's override, else the lowercase Purchasely
// name); the visitor id from the integration's ordered sources; then the
// derived properties under their renamed keys (dropped ones left out) and the
// static ones. Strings over piano.MaxStringLen characters are cut on a rune
// boundary and decimals beyond ±piano.MaxDecimal left out, both counted in
// the Report. It writes h's Site, Name, IDClient and Props (reusing Props'
// capacity) and nothing else, and allocates nothing once Props is large
// enough, except the text of date properties and the copy of the visitor id.
//
// An event no source gives a visitor id is dropped as ErrNoIDClient, one
// whose name r does not send as ErrEventNotEnabled.
func (r *Route) Map(ev *codec.Event, h *Hit) (Report, error) {
	var rep Report
	name, ok := r.names[ev.EventName]
	if !ok {
		return rep, ErrEventNotEnabled
	}
	id := ""
	for _, s := range r.idclient {
		switch {
		case s.attribute != "":
			id = ev.UserAttributes[s.attribute]
		case s.field == "user_id":
			id = ev.UserID
		default:
			id = ev.AnonymousUserID
		}
		if id != "" {
			break
		}
	}
	if id == "" {
		return rep, ErrNoIDClient
	}
	// The hit outlives the event while it waits in a batch, and an event's
	// strings share one buffer per record (codec.Decoder.DecodeInto, or the
	// relay's copy of the record with DecodeIntoShared): the
	// hit keeps its own copy of the id, not the whole record.
	h.Site, h.Name, h.IDClient = &r.site, name, strings.Clone(id)
	if h.Props == nil {
		h.Props = make([]Prop, 0, len(derivedProps)+len(r.static))
	}
	h.Props = h.Props[:0]
	for i := range derivedProps {
		key := r.keys[i]
		if key == "" {
			continue
		}
		v, ok := derivedProps[i].get(ev)
		if !ok {
			continue
		}
		switch v.Kind {
		case KindString:
			if len(v.Str) > piano.MaxStringLen && utf8.RuneCountInString(v.Str) > piano.MaxStringLen {
				v.Str = truncate(v.Str, piano.MaxStringLen)
				rep.Truncated++
			}
		case KindFloat:
			if math.IsNaN(v.Float) || math.Abs(v.Float) > piano.MaxDecimal {
				rep.OutOfRange++
				continue
			}
		}
		h.Props = append(h.Props, Prop{Key: key, Value: v})
	}
	h.Props = append(h.Props, r.static...)
	return rep, nil
}

// truncate cuts s to n runes, on a rune boundary.
func truncate(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// Description is what one integration sends, for `atrelay check`: what the
// operator must declare in Piano's Data Model.
type Description struct {
	Integration string
	SiteID      int64
	Endpoint    string
	Enabled     bool
	// Environments sent, sorted.
	Environments []string
	// Events maps each enabled Purchasely event to its Piano name.
	Events map[string]string
	// Properties maps each key that may be sent to its type: string,
	// integer, decimal, boolean or date.
	Properties map[string]string
}

// Describe returns what each integration sends, in configuration order.
func Describe(in *Integrations) []Description {
	out := make([]Description, 0, len(in.list))
	for _, r := range in.list {
		d := Description{
			Integration: r.site.Integration, SiteID: r.site.ID, Endpoint: r.site.Endpoint, Enabled: r.enabled,
			Events: map[string]string{}, Properties: map[string]string{},
		}
		for e := range r.environments {
			d.Environments = append(d.Environments, e)
		}
		slices.Sort(d.Environments)
		for e, n := range r.names {
			d.Events[e] = n
		}
		for i, k := range r.keys {
			if k != "" {
				d.Properties[k] = derivedProps[i].kind
			}
		}
		for _, p := range r.static {
			d.Properties[p.Key] = [...]string{"string", "integer", "decimal", "boolean"}[p.Value.Kind]
		}
		out = append(out, d)
	}
	return out
}
