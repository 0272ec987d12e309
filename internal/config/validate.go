package config

import (
	"github.com/atrelay/atrelay/internal/redact"

	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/atrelay/atrelay/internal/piano"
)

var reflectConfig = reflect.TypeOf(Config{})

// checkKeys walks the YAML tree beside the struct type and reports every key
// the type does not have, with its path and line: a typo must not silently
// fall back to a default.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return checkKeys(n.Content[0], t, path)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			if tag := strings.Split(f.Tag.Get("yaml"), ",")[0]; tag != "" && tag != "-" {
				fields[tag] = f.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				errs = append(errs, fieldErr(p, "unknown key (line %d)", k.Line))
				continue
			}
			errs = append(errs, checkKeys(v, ft, p))
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			errs = append(errs, checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)))
		}
	case t.Kind() == reflect.Struct && n.Kind != yaml.MappingNode && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null"):
		errs = append(errs, fieldErr(orRoot(path), "must be a mapping (line %d)", n.Line))
	}
	return errors.Join(errs...)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

// Validate checks every area and returns all problems at once, each a
// *FieldError naming its key path.
func (c *Config) Validate() error {
	errs := []error{
		prefix("kafka", c.Kafka.Validate()),
		prefix("codec", c.Codec.Validate()),
		prefix("delivery", c.Delivery.Validate()),
		prefix("telemetry", c.Telemetry.Validate()),
	}
	if len(c.Integrations) == 0 {
		errs = append(errs, fieldErr("integrations", "at least one integration is required"))
	}
	names, apps := map[string]int{}, map[string]int{}
	for i := range c.Integrations {
		in := &c.Integrations[i]
		p := fmt.Sprintf("integrations[%d]", i)
		errs = append(errs, prefix(p, in.Validate()))
		if j, dup := names[in.Name]; dup && in.Name != "" {
			errs = append(errs, fieldErr(p+".name", "%q is already the name of integrations[%d]", in.Name, j))
		}
		if j, dup := apps[in.AppID]; dup && in.AppID != "" {
			errs = append(errs, fieldErr(p+".app_id", "%q is already routed to integrations[%d]", in.AppID, j))
		}
		names[in.Name], apps[in.AppID] = i, i
	}
	if c.Kafka.DLQTopic != "" && c.Kafka.DLQTopic == c.Kafka.Topic {
		errs = append(errs, fieldErr("kafka.dlq_topic", "must differ from kafka.topic"))
	}
	return errors.Join(errs...)
}

// prefix puts path in front of the key paths of err's FieldErrors.
func prefix(path string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, &FieldError{Path: join(path, fe.Path), Msg: fe.Msg})
		} else {
			out = append(out, fmt.Errorf("%s: %w", path, e))
		}
	}
	return errors.Join(out...)
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// Validate checks the kafka section.
func (k *Kafka) Validate() error {
	var errs []error
	if len(k.Brokers) == 0 {
		errs = append(errs, fieldErr("brokers", "at least one broker (host:port) is required"))
	}
	for i, b := range k.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			errs = append(errs, fieldErr(fmt.Sprintf("brokers[%d]", i), "%q is not host:port", b))
		}
	}
	if k.Topic == "" {
		errs = append(errs, fieldErr("topic", "is required"))
	}
	if k.Group == "" {
		errs = append(errs, fieldErr("group", "is required"))
	}
	if k.StartFrom != "earliest" && k.StartFrom != "latest" {
		errs = append(errs, fieldErr("start_from", "must be earliest or latest, not %q", k.StartFrom))
	}
	if k.TLS.Enabled {
		for key, f := range map[string]string{"tls.ca_file": k.TLS.CAFile, "tls.cert_file": k.TLS.CertFile, "tls.key_file": k.TLS.KeyFile} {
			if f == "" {
				continue
			}
			if _, err := os.Stat(f); err != nil {
				errs = append(errs, fieldErr(key, "cannot read %s", f))
			}
		}
		if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
			errs = append(errs, fieldErr("tls", "cert_file and key_file go together"))
		}
	}
	switch k.SASL.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if k.SASL.Username == "" || k.SASL.Password == "" {
			errs = append(errs, fieldErr("sasl", "username and password are required with mechanism %s", k.SASL.Mechanism))
		}
	default:
		errs = append(errs, fieldErr("sasl.mechanism", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", k.SASL.Mechanism))
	}
	return errors.Join(errs...)
}

// Validate checks the codec section.
func (c *Codec) Validate() error {
	var errs []error
	switch c.Framing {
	case "auto", "confluent", "single-object", "raw":
	default:
		errs = append(errs, fieldErr("framing", "must be auto, confluent, single-object or raw, not %q", c.Framing))
	}
	if c.SchemaRegistry.URL != "" {
		if u, err := url.Parse(c.SchemaRegistry.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fieldErr("schema_registry.url", "%q is not an http(s) URL", redact.URL(c.SchemaRegistry.URL)))
		}
	} else if c.Framing == "confluent" {
		errs = append(errs, fieldErr("schema_registry.url", "is required with framing confluent"))
	}
	return errors.Join(errs...)
}

// Validate checks the delivery section.
func (d *Delivery) Validate() error {
	var errs []error
	positive := func(key string, v int64) {
		if v <= 0 {
			errs = append(errs, fieldErr(key, "must be positive"))
		}
	}
	positive("max_events", int64(d.MaxEvents))
	positive("concurrency", int64(d.Concurrency))
	positive("max_buffered_events", int64(d.MaxBufferedEvents))
	positive("linger", int64(d.Linger))
	positive("request_timeout", int64(d.RequestTimeout))
	positive("backoff.min", int64(d.Backoff.Min))
	positive("backoff.max", int64(d.Backoff.Max))
	positive("commit_interval", int64(d.CommitInterval))
	positive("shutdown_timeout", int64(d.ShutdownTimeout))
	if d.MaxBytes < 1024 {
		errs = append(errs, fieldErr("max_bytes", "must be at least 1024"))
	}
	if d.Backoff.Min > d.Backoff.Max {
		errs = append(errs, fieldErr("backoff", "min (%s) must not exceed max (%s)", d.Backoff.Min, d.Backoff.Max))
	}
	if d.MaxBufferedEvents > 0 && d.MaxEvents > d.MaxBufferedEvents {
		errs = append(errs, fieldErr("max_buffered_events", "must be at least max_events (%d)", d.MaxEvents))
	}
	return errors.Join(errs...)
}

var purchaselyName = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// Validate checks one integration.
func (in *Integration) Validate() error {
	var errs []error
	if strings.TrimSpace(in.Name) == "" {
		errs = append(errs, fieldErr("name", "is required"))
	}
	if in.AppID == "" {
		errs = append(errs, fieldErr("app_id", "is required"))
	}
	if in.SiteID <= 0 {
		errs = append(errs, fieldErr("site_id", "must be a positive integer"))
	}
	if _, _, err := in.Endpoint(); err != nil {
		errs = append(errs, fieldErr("collect_domain", "%v", err))
	}
	if strings.ContainsAny(in.CollectPath, "?#") || strings.Contains(in.CollectPath, "//") {
		errs = append(errs, fieldErr("collect_path", "must be a path without ?, # or empty segments"))
	}
	for i, e := range in.Environments {
		if e != "SANDBOX" && e != "PRODUCTION" {
			errs = append(errs, fieldErr(fmt.Sprintf("environments[%d]", i), "must be SANDBOX or PRODUCTION, not %q", e))
		}
	}
	if len(in.Events) == 0 {
		errs = append(errs, fieldErr("events", "at least one event name is required"))
	}
	seen := map[string]bool{}
	for i, e := range in.Events {
		if !purchaselyName.MatchString(e) {
			errs = append(errs, fieldErr(fmt.Sprintf("events[%d]", i), "%q is not a Purchasely event name (like SUBSCRIPTION_STARTED)", e))
		}
		if seen[e] {
			errs = append(errs, fieldErr(fmt.Sprintf("events[%d]", i), "%s is listed twice", e))
		}
		seen[e] = true
	}
	for _, k := range slices.Sorted(maps.Keys(in.EventNames)) {
		if !seen[k] {
			errs = append(errs, fieldErr("event_names."+k, "is not in events"))
		}
		if err := piano.CheckEventName(in.EventNames[k]); err != nil {
			errs = append(errs, fieldErr("event_names."+k, "%q %v", in.EventNames[k], err))
		}
	}
	for i, src := range in.IDClientFrom {
		switch {
		case src == "user_id", src == "anonymous_user_id":
		case strings.HasPrefix(src, "attribute:") && len(src) > len("attribute:"):
		default:
			errs = append(errs, fieldErr(fmt.Sprintf("idclient_from[%d]", i), "must be attribute:<name>, user_id or anonymous_user_id, not %q", src))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(in.Properties.Rename)) {
		if err := piano.CheckKey(in.Properties.Rename[k]); err != nil {
			errs = append(errs, fieldErr("properties.rename."+k, "%q %v", in.Properties.Rename[k], err))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(in.Properties.Static)) {
		p := "properties.static." + k
		if err := piano.CheckKey(k); err != nil {
			errs = append(errs, fieldErr(p, "key %v", err))
		}
		switch v := in.Properties.Static[k].(type) {
		case string:
			if utf8.RuneCountInString(v) > piano.MaxStringLen {
				errs = append(errs, fieldErr(p, "must be at most %d characters", piano.MaxStringLen))
			}
		case int, int64, bool:
		case float64:
			if v > piano.MaxDecimal || v < -piano.MaxDecimal {
				errs = append(errs, fieldErr(p, "must be within ±1e15"))
			}
		default:
			errs = append(errs, fieldErr(p, "must be a string, number or boolean"))
		}
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

// Validate checks the telemetry section.
func (t *Telemetry) Validate() error {
	var errs []error
	for key, addr := range map[string]string{"metrics_listen": t.MetricsListen, "health_listen": t.HealthListen} {
		if addr == "" || addr == "off" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fieldErr(key, "%q is not host:port (or off)", addr))
		}
	}
	return errors.Join(errs...)
}
