package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/config"
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
			return String(t.Value.UTC().Format(dateLayout)), true
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

// route is one compiled integration: everything the stages need, built once.
type route struct {
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
	byApp map[string]*route
	list  []*route
}

// Compile checks and compiles the configured integrations. Its errors name
// the configuration key, so that a bad override stops atrelay at start-up
// rather than at the first event.
func Compile(cfgs []config.Integration) (*Integrations, error) {
	in := &Integrations{byApp: make(map[string]*route, len(cfgs))}
	var errs []error
	for i := range cfgs {
		c := &cfgs[i]
		p := fmt.Sprintf("integrations[%d]", i)
		endpoint, _, err := c.Endpoint()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.collect_domain: %w", p, err))
		}
		r := &route{
			site:         Site{Integration: c.Name, ID: c.SiteID, Endpoint: endpoint},
			enabled:      c.IsEnabled(),
			environments: map[string]bool{},
			names:        map[string]string{},
		}
		for _, e := range c.Environments {
			r.environments[e] = true
		}
		for _, e := range c.Events {
			name := piano.DefaultEventName(e)
			if o, ok := c.EventNames[e]; ok {
				name = o
			}
			if err := piano.CheckEventName(name); err != nil {
				errs = append(errs, fmt.Errorf("%s.event_names.%s: %q %w", p, e, name, err))
			}
			r.names[e] = name
		}
		errs = append(errs, r.compileProps(p, c.Properties))
		for j, s := range c.IDClientFrom {
			if a, ok := strings.CutPrefix(s, "attribute:"); ok {
				r.idclient = append(r.idclient, idSource{attribute: a})
			} else if s == "user_id" || s == "anonymous_user_id" {
				r.idclient = append(r.idclient, idSource{field: s})
			} else {
				errs = append(errs, fmt.Errorf("%s.idclient_from[%d]: unknown source %q", p, j, s))
			}
		}
		if len(r.idclient) == 0 {
			r.idclient = []idSource{{attribute: "at_internet_id_client"}}
		}
		if _, dup := in.byApp[c.AppID]; dup {
			errs = append(errs, fmt.Errorf("%s.app_id: %q is routed twice", p, c.AppID))
		}
		in.byApp[c.AppID] = r
		in.list = append(in.list, r)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return in, nil
}

// compileProps builds the key table: renames and drops cost nothing per
// event because enrich writes each derived property under its final key.
func (r *route) compileProps(p string, props config.Properties) error {
	var errs []error
	index := map[string]int{}
	for i, d := range derivedProps {
		index[d.key] = i
	}
	r.keys = DerivedKeys()
	for _, k := range slices.Sorted(maps.Keys(props.Rename)) {
		i, ok := index[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s.properties.rename.%s: not a property atrelay sends (see `atrelay check`)", p, k))
			continue
		}
		if err := piano.CheckKey(props.Rename[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s.properties.rename.%s: %q %w", p, k, props.Rename[k], err))
		}
		r.keys[i] = props.Rename[k]
	}
	for j, k := range props.Drop {
		i, ok := index[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s.properties.drop[%d]: %q is not a property atrelay sends", p, j, k))
			continue
		}
		r.keys[i] = ""
	}
	sent := map[string]string{}
	for i, k := range r.keys {
		if k == "" {
			continue
		}
		if other, dup := sent[k]; dup {
			errs = append(errs, fmt.Errorf("%s.properties.rename: %s and %s would both be sent as %q", p, other, derivedProps[i].key, k))
		}
		sent[k] = derivedProps[i].key
	}
	for _, k := range slices.Sorted(maps.Keys(props.Static)) {
		if _, dup := sent[k]; dup {
			errs = append(errs, fmt.Errorf("%s.properties.static.%s: collides with a derived property", p, k))
			continue
		}
		if err := piano.CheckKey(k); err != nil {
			errs = append(errs, fmt.Errorf("%s.properties.static.%s: %w", p, k, err))
		}
		var v Value
		switch x := props.Static[k].(type) {
		case string:
			v = String(x)
		case int:
			v = Int(int64(x))
		case int64:
			v = Int(x)
		case float64:
			v = Float(x)
		case bool:
			v = Bool(x)
		default:
			errs = append(errs, fmt.Errorf("%s.properties.static.%s: must be a string, number or boolean", p, k))
			continue
		}
		r.static = append(r.static, Prop{Key: k, Value: v})
	}
	return errors.Join(errs...)
}

// Stages returns filter, rename and enrich, in order, for Chain.
func Stages(in *Integrations) []Named {
	return []Named{{"filter", Filter(in)}, {"rename", Rename()}, {"enrich", Enrich()}}
}

// Filter routes an event to its integration by app id and drops (with a
// reason) events of apps with no integration, of disabled integrations, of
// event names not enabled, and of environments not enabled.
func Filter(in *Integrations) Stage {
	return StageFunc(func(_ context.Context, h *Hit) error {
		r := in.byApp[h.Event.AppID]
		switch {
		case r == nil:
			return ErrNoIntegration
		case !r.enabled:
			return ErrIntegrationDisabled
		case !r.environments[h.Event.Environment]:
			return ErrEnvironmentDisabled
		}
		if _, ok := r.names[h.Event.EventName]; !ok {
			return ErrEventNotEnabled
		}
		h.route, h.Site = r, &r.site
		return nil
	})
}

// Rename sets the Piano event name: the integration's override, else the
// lowercase Purchasely name. Property renames and drops were compiled into
// the key table enrich writes with.
func Rename() Stage {
	return StageFunc(func(_ context.Context, h *Hit) error {
		if h.route == nil {
			return errors.New("rename: event was not routed (filter must run first)")
		}
		h.Name = h.route.names[h.Event.EventName]
		return nil
	})
}

// Enrich sets the visitor id from the integration's ordered sources (no
// source: dropped as no_idclient), then the derived and static properties.
// Strings over 255 characters are cut and counted in h.Truncated; decimals
// outside ±1e15 are left out and counted in h.OutOfRange.
func Enrich() Stage {
	return StageFunc(func(_ context.Context, h *Hit) error {
		r, ev := h.route, h.Event
		if r == nil {
			return errors.New("enrich: event was not routed (filter must run first)")
		}
		h.IDClient = ""
		for _, s := range r.idclient {
			switch {
			case s.attribute != "":
				h.IDClient = ev.UserAttributes[s.attribute]
			case s.field == "user_id":
				h.IDClient = ev.UserID
			default:
				h.IDClient = ev.AnonymousUserID
			}
			if h.IDClient != "" {
				break
			}
		}
		if h.IDClient == "" {
			return ErrNoIDClient
		}
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
					h.Truncated++
				}
			case KindFloat:
				if math.IsNaN(v.Float) || math.Abs(v.Float) > piano.MaxDecimal {
					h.OutOfRange++
					continue
				}
			}
			h.Props = append(h.Props, Prop{Key: key, Value: v})
		}
		h.Props = append(h.Props, r.static...)
		return nil
	})
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
