package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/piano"
	"github.com/atrelay/atrelay/internal/redact"
)

// Integration sends one Purchasely app's events to one Piano Analytics
// site: one element of the configuration's `integrations` list. Every rule
// about it lives in Validate and every default in Default; Compile builds
// from what they accept.
type Integration struct {
	Name          string            `yaml:"name"`
	AppID         string            `yaml:"app_id"`
	Enabled       *bool             `yaml:"enabled"` // nil means true
	SiteID        int64             `yaml:"site_id"`
	CollectDomain string            `yaml:"collect_domain"`
	CollectPath   string            `yaml:"collect_path"`
	Environments  []string          `yaml:"environments"` // default [PRODUCTION]
	Events        []string          `yaml:"events"`
	EventNames    map[string]string `yaml:"event_names"`   // Purchasely name -> Piano name
	IDClientFrom  []string          `yaml:"idclient_from"` // default [attribute:at_internet_id_client]
	Properties    Properties        `yaml:"properties"`
	// OnReject is what the service does when the site rejects requests
	// (a permanent HTTP status): pause (the default) stops sending to the
	// site when its rejections look like a storm (a wrong site id or
	// path) and keeps its records; dlq dead-letters every rejected event.
	OnReject RejectPolicy `yaml:"on_reject"`
	// TLS is how the collect endpoint's certificate is verified.
	TLS CollectTLS `yaml:"tls"`
}

// RejectPolicy is what the service does with a site's rejected events
// (integrations[].on_reject).
type RejectPolicy string

// The reject policies.
const (
	// RejectPause dead-letters an event the site rejects alone, but pauses
	// the site instead when its rejections are a storm: 401, 403 or 404
	// (the site or path is wrong, not the event), or most of its recent
	// requests. A paused site's records wait, neither dead-lettered nor
	// delivered, until a probe request is accepted.
	RejectPause RejectPolicy = "pause"
	// RejectDLQ dead-letters every rejected event and never pauses.
	RejectDLQ RejectPolicy = "dlq"
)

// Properties reshapes the properties sent with every event of an integration.
type Properties struct {
	Rename map[string]string `yaml:"rename"` // derived key -> key sent
	Drop   []string          `yaml:"drop"`   // derived keys not sent
	Static map[string]any    `yaml:"static"` // key -> string, integer, float or boolean
}

// The defaults of an integration (SPEC §5).
const (
	// DefaultCollectPath is Piano's default collection path.
	DefaultCollectPath = "event"
	// DefaultEnvironment is the only environment sent unless configured.
	DefaultEnvironment = "PRODUCTION"
	// DefaultIDClientFrom is where the visitor id comes from unless configured.
	DefaultIDClientFrom = "attribute:at_internet_id_client"
	// DefaultOnReject is the reject policy unless configured.
	DefaultOnReject = RejectPause
)

// IsEnabled reports whether the integration sends anything.
func (in *Integration) IsEnabled() bool { return in.Enabled == nil || *in.Enabled }

// Default fills the unset keys and normalises the collect path (no leading
// slash).
func (in *Integration) Default() {
	if len(in.Environments) == 0 {
		in.Environments = []string{DefaultEnvironment}
	}
	if len(in.IDClientFrom) == 0 {
		in.IDClientFrom = []string{DefaultIDClientFrom}
	}
	in.CollectPath = strings.TrimPrefix(in.CollectPath, "/")
	if in.CollectPath == "" {
		in.CollectPath = DefaultCollectPath
	}
	if in.OnReject == "" {
		in.OnReject = DefaultOnReject
	}
}

var purchaselyName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// Validate checks one integration; key paths are relative to it.
func (in *Integration) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, fielderr.New(path, format, args...)) }
	if strings.TrimSpace(in.Name) == "" {
		add("name", "is required")
	}
	if in.AppID == "" {
		add("app_id", "is required")
	}
	if in.SiteID <= 0 {
		add("site_id", "must be a positive integer")
	}
	if _, _, err := in.Endpoint(); err != nil {
		add("collect_domain", "%v", err)
	}
	if strings.ContainsAny(in.CollectPath, "?#") || strings.Contains(in.CollectPath, "//") {
		add("collect_path", "must be a path without ?, # or empty segments")
	}
	for i, e := range in.Environments {
		if e != "SANDBOX" && e != "PRODUCTION" {
			add(fmt.Sprintf("environments[%d]", i), "must be SANDBOX or PRODUCTION, not %q", e)
		}
	}
	if len(in.Events) == 0 {
		add("events", "at least one event name is required")
	}
	seen := map[string]bool{}
	for i, e := range in.Events {
		if !purchaselyName.MatchString(e) {
			add(fmt.Sprintf("events[%d]", i), "%q is not a Purchasely event name (like SUBSCRIPTION_STARTED)", e)
		}
		if seen[e] {
			add(fmt.Sprintf("events[%d]", i), "%s is listed twice", e)
		}
		seen[e] = true
	}
	for _, k := range slices.Sorted(maps.Keys(in.EventNames)) {
		if !seen[k] {
			add("event_names."+k, "is not in events")
		}
		if err := piano.CheckEventName(in.EventNames[k]); err != nil {
			add("event_names."+k, "%q %v", in.EventNames[k], err)
		}
	}
	for i, src := range in.IDClientFrom {
		if _, err := parseIDSource(src); err != nil {
			add(fmt.Sprintf("idclient_from[%d]", i), "%v", err)
		}
	}
	if in.OnReject != RejectPause && in.OnReject != RejectDLQ {
		add("on_reject", "must be pause or dlq, not %q", in.OnReject)
	}
	errs = append(errs, fielderr.Prefix("properties", in.Properties.validate()), in.TLS.validate(in))
	return errors.Join(errs...)
}

// validate checks the renames, drops and static properties against the
// properties atrelay derives (DerivedKeys).
func (p *Properties) validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, fielderr.New(path, format, args...)) }
	keys, err := p.keys()
	for _, k := range slices.Sorted(maps.Keys(p.Rename)) {
		if !slices.Contains(DerivedKeys(), k) {
			add("rename."+k, "not a property atrelay sends (see `atrelay check`)")
		} else if err := piano.CheckKey(p.Rename[k]); err != nil {
			add("rename."+k, "%q %v", p.Rename[k], err)
		}
	}
	for j, k := range p.Drop {
		if !slices.Contains(DerivedKeys(), k) {
			add(fmt.Sprintf("drop[%d]", j), "%q is not a property atrelay sends", k)
		}
	}
	if err != nil {
		errs = append(errs, err)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Static)) {
		path := "static." + k
		if slices.Contains(keys, k) {
			add(path, "collides with a derived property")
			continue
		}
		if err := piano.CheckKey(k); err != nil {
			add(path, "key %v", err)
		}
		if _, err := staticValue(p.Static[k]); err != nil {
			add(path, "%v", err)
		}
	}
	return errors.Join(errs...)
}

// keys returns, per derived property, the key it is sent as after the
// renames and drops ("" when dropped), and an error when two would be sent
// under one key. Unknown rename and drop keys are ignored here (validate
// reports them).
func (p *Properties) keys() ([]string, error) {
	keys := DerivedKeys()
	for i, k := range keys {
		if to, ok := p.Rename[k]; ok {
			keys[i] = to
		}
		if slices.Contains(p.Drop, k) {
			keys[i] = ""
		}
	}
	var errs []error
	sent := map[string]string{}
	for i, k := range keys {
		if k == "" {
			continue
		}
		if other, dup := sent[k]; dup {
			errs = append(errs, fielderr.New("rename", "%s and %s would both be sent as %q", other, derivedProps[i].key, k))
		}
		sent[k] = derivedProps[i].key
	}
	return keys, errors.Join(errs...)
}

// staticValue converts a static property's YAML value.
func staticValue(x any) (Value, error) {
	switch v := x.(type) {
	case string:
		if utf8.RuneCountInString(v) > piano.MaxStringLen {
			return Value{}, fmt.Errorf("must be at most %d characters", piano.MaxStringLen)
		}
		return String(v), nil
	case int:
		return Int(int64(v)), nil
	case int64:
		return Int(v), nil
	case float64:
		if v > piano.MaxDecimal || v < -piano.MaxDecimal || v != v {
			return Value{}, errors.New("must be within ±1e15")
		}
		return Float(v), nil
	case bool:
		return Bool(v), nil
	}
	return Value{}, errors.New("must be a string, number or boolean")
}

// parseIDSource reads one idclient_from entry.
func parseIDSource(s string) (idSource, error) {
	if a, ok := strings.CutPrefix(s, "attribute:"); ok && a != "" {
		return idSource{attribute: a}, nil
	}
	if s == "user_id" || s == "anonymous_user_id" {
		return idSource{field: s}, nil
	}
	return idSource{}, fmt.Errorf("must be attribute:<name>, user_id or anonymous_user_id, not %q", s)
}

// ValidateAll checks a list of integrations: each one, and the rules
// between them (names and app ids unique, at least one). Key paths start
// with the element's index ("[1].site_id").
func ValidateAll(ins []Integration) error {
	var errs []error
	if len(ins) == 0 {
		errs = append(errs, fielderr.New("", "at least one integration is required"))
	}
	names, apps := map[string]int{}, map[string]int{}
	for i := range ins {
		in := &ins[i]
		p := fmt.Sprintf("[%d]", i)
		errs = append(errs, fielderr.Prefix(p, in.Validate()))
		if j, dup := names[in.Name]; dup && in.Name != "" {
			errs = append(errs, fielderr.New(p+".name", "%q is already the name of integrations[%d]", in.Name, j))
		}
		if j, dup := apps[in.AppID]; dup && in.AppID != "" {
			errs = append(errs, fielderr.New(p+".app_id", "%q is already routed to integrations[%d]", in.AppID, j))
		}
		names[in.Name], apps[in.AppID] = i, i
	}
	return errors.Join(errs...)
}

// Endpoint returns the collect URL without its query, and whether it is
// plain HTTP (allowed for local collectors, warned about at start-up).
func (in *Integration) Endpoint() (endpoint string, plainHTTP bool, err error) {
	d := in.CollectDomain
	if d == "" {
		return "", false, errors.New("is required")
	}
	origin := "https://" + d
	if strings.Contains(d, "://") {
		origin = d
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", false, fmt.Errorf("%q must be a host, host:port or an http(s) origin", redact.URL(d))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", false, fmt.Errorf("%q has a bad port", d)
		}
	}
	return u.Scheme + "://" + u.Host + "/" + in.CollectPath, u.Scheme == "http", nil
}
