// Package config loads atrelay's YAML configuration (SPEC §5): environment
// expansion, strict keys, defaults, and validation errors that name the key.
package config

import "time"

// Config is the whole configuration file. Each area has its own struct and
// its own Validate; Load fills defaults and validates everything.
type Config struct {
	Kafka        Kafka         `yaml:"kafka"`
	Codec        Codec         `yaml:"codec"`
	Delivery     Delivery      `yaml:"delivery"`
	Integrations []Integration `yaml:"integrations"`
	Telemetry    Telemetry     `yaml:"telemetry"`
}

// Kafka is the consumer group and its connection.
type Kafka struct {
	Brokers   []string `yaml:"brokers"`
	Topic     string   `yaml:"topic"`
	Group     string   `yaml:"group"`
	StartFrom string   `yaml:"start_from"` // earliest | latest, for a group with no committed offset
	DLQTopic  string   `yaml:"dlq_topic"`
	TLS       TLS      `yaml:"tls"`
	SASL      SASL     `yaml:"sasl"`
}

// TLS configures the broker connection's TLS. Files are PEM.
type TLS struct {
	Enabled  bool   `yaml:"enabled"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// SASL configures broker authentication; an empty Mechanism means none.
type SASL struct {
	Mechanism string `yaml:"mechanism"` // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username  string `yaml:"username"`
	Password  Secret `yaml:"password"`
}

// Codec says how record values are framed and where writer schemas come from.
type Codec struct {
	Framing        string         `yaml:"framing"` // auto | confluent | single-object | raw
	SchemaRegistry SchemaRegistry `yaml:"schema_registry"`
	RawSchema      string         `yaml:"raw_schema"`
}

// SchemaRegistry is a Confluent-compatible schema registry.
type SchemaRegistry struct {
	URL      string `yaml:"url"`
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
}

// Delivery bounds batching, HTTP delivery, buffering and committing.
type Delivery struct {
	MaxEvents         int           `yaml:"max_events"`
	MaxBytes          int           `yaml:"max_bytes"`
	Linger            time.Duration `yaml:"linger"`
	Concurrency       int           `yaml:"concurrency"`
	RequestTimeout    time.Duration `yaml:"request_timeout"`
	Backoff           Backoff       `yaml:"backoff"`
	MaxBufferedEvents int           `yaml:"max_buffered_events"`
	CommitInterval    time.Duration `yaml:"commit_interval"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
}

// Backoff bounds the jittered exponential backoff between retries; Max also
// caps a collector's Retry-After.
type Backoff struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// Integration sends one Purchasely app's events to one Piano Analytics site.
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
}

// IsEnabled reports whether the integration sends anything.
func (i *Integration) IsEnabled() bool { return i.Enabled == nil || *i.Enabled }

// Properties reshapes the properties sent with every event of an integration.
type Properties struct {
	Rename map[string]string `yaml:"rename"` // derived key -> key sent
	Drop   []string          `yaml:"drop"`   // derived keys not sent
	Static map[string]any    `yaml:"static"` // key -> string, integer, float or boolean
}

// Telemetry names the service and where its metrics and health endpoints listen.
type Telemetry struct {
	ServiceName   string `yaml:"service_name"`
	MetricsListen string `yaml:"metrics_listen"`
	HealthListen  string `yaml:"health_listen"`
}

// Secret is a string that never prints: fmt, slog and YAML output show
// <redacted>. Use Reveal where the real value is needed.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// GoString implements fmt.GoStringer, so %#v does not leak it either.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText implements encoding.TextMarshaler (JSON, slog).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
