package pipeline

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/config"
	"github.com/atrelay/atrelay/internal/piano"
)

// derived is one property atrelay computes from every event, in send order.
type derived struct {
	key  string
	kind string // for Describe: string, integer, decimal, boolean, date
	get  func(ev *codec.Event) (Value, bool)
}

func str(f func(ev *codec.Event) string) func(*codec.Event) (Value, bool) {
	return func(ev *codec.Event) (Value, bool) { s := f(ev); return String(s), s != "" }
}

func date(f func(ev *codec.Event) codec.Null[time.Time]) func(*codec.Event) (Value, bool) {
	return func(ev *codec.Event) (Value, bool) {
		t := f(ev)
		if !t.Valid {
			return Value{}, false
		}
		return String(t.Value.UTC().Format(dateLayout)), true
	}
}

func decimal(f func(ev *codec.Event) codec.Null[float64]) func(*codec.Event) (Value, bool) {
	return func(ev *codec.Event) (Value, bool) {
		n := f(ev)
		return Float(n.Value), n.Valid
	}
}

// dateLayout is RFC 3339 with milliseconds, in UTC.
const dateLayout = "2006-01-02T15:04:05.000Z07:00"

// derivedProps are the properties of every hit, in send order; each is left
// out when its source is null or empty.
var derivedProps = []derived{
	{"event_id", "string", str(func(ev *codec.Event) string { return ev.EventID })},
	{"event_date", "date", date(func(ev *codec.Event) codec.Null[time.Time] { return codec.Some(ev.EventCreatedAt) })},
	{"purchasely_event", "string", str(func(ev *codec.Event) string { return ev.EventName })},
	{"user_id", "string", str(func(ev *codec.Event) string { return ev.UserID })},
	{"app_id", "string", str(func(ev *codec.Event) string { return ev.AppID })},
	{"environment", "string", str(func(ev *codec.Event) string { return ev.Environment })},
	{"store", "string", str(func(ev *codec.Event) string { return ev.Store })},
	{"store_country", "string", str(func(ev *codec.Event) string { return ev.StoreCountry })},
	{"product", "string", str(func(ev *codec.Event) string { return ev.Product })},
	{"plan", "string", str(func(ev *codec.Event) string { return ev.Plan })},
	{"previous_plan", "string", str(func(ev *codec.Event) string { return ev.PreviousPlan })},
	{"offer_type", "string", str(func(ev *codec.Event) string { return ev.OfferType })},
	{"offer_identifier", "string", str(func(ev *codec.Event) string { return ev.OfferIdentifier })},
	{"plan_price", "decimal", decimal(func(ev *codec.Event) codec.Null[float64] { return ev.PlanPrice })},
	{"currency", "string", str(func(ev *codec.Event) string { return ev.CustomerCurrency })},
	{"amount", "decimal", decimal(func(ev *codec.Event) codec.Null[float64] { return ev.Amount })},
	{"purchase_date", "date", date(func(ev *codec.Event) codec.Null[time.Time] { return ev.PurchasedAt })},
	{"next_renewal_date", "date", date(func(ev *codec.Event) codec.Null[time.Time] { return ev.NextRenewalAt })},
	{"subscription_status", "string", str(func(ev *codec.Event) string { return ev.SubscriptionStatus })},
	{"is_family_shared", "boolean", func(ev *codec.Event) (Value, bool) { return Bool(ev.IsFamilyShared), true }},
	{"store_transaction_id", "string", str(func(ev *codec.Event) string { return ev.StoreTransactionID })},
	{"store_original_transaction_id", "string", str(func(ev *codec.Event) string { return ev.StoreOriginalTransactionID })},
	{"purchasely_subscription_id", "string", str(func(ev *codec.Event) string { return ev.PurchaselySubscriptionID })},
	{"placement", "string", str(func(ev *codec.Event) string { return ev.Placement })},
	{"presentation", "string", str(func(ev *codec.Event) string { return ev.Presentation })},
	{"ab_test", "string", str(func(ev *codec.Event) string { return ev.ABTest })},
	{"ab_test_variant", "string", str(func(ev *codec.Event) string { return ev.ABTestVariant })},
	{"audience", "string", str(func(ev *codec.Event) string { return ev.Audience })},
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
