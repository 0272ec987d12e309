package codec

import (
	"errors"
	"net/url"

	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/redact"
	"github.com/atrelay/atrelay/internal/secret"
)

// Config is the configuration's `codec` section: how record values are
// framed and where writer schemas come from.
type Config struct {
	Framing        string         `yaml:"framing"` // auto | confluent | single-object | raw
	SchemaRegistry SchemaRegistry `yaml:"schema_registry"`
	// RawSchema is the file holding the writer schema of raw records; a
	// missing file that names an embedded schema reads the embedded copy.
	RawSchema string `yaml:"raw_schema"`
	// MaxRecordBytes is the largest record value decoded, in bytes; a
	// larger one is dead-lettered with reason too_large, unread. It is a
	// pointer so that an unset key (nil: DefaultMaxRecordBytes) differs
	// from an explicit 0, which Validate rejects rather than read as
	// "no limit" or as the default.
	MaxRecordBytes *int `yaml:"max_record_bytes"`
}

// SchemaRegistry is a Confluent-compatible schema registry.
type SchemaRegistry struct {
	URL      string        `yaml:"url"`
	Username string        `yaml:"username"`
	Password secret.Secret `yaml:"password"`
}

// DefaultRawSchema is the raw schema unless configured: the embedded copy
// of schemas/subscription_event.avsc when the file is not there.
const DefaultRawSchema = "schemas/subscription_event.avsc"

// DefaultMaxRecordBytes is max_record_bytes unless configured: 1 MiB, the
// size of Kafka's default max.message.bytes, and some hundred times the
// largest subscription event, so that only a record that is not one (a
// mis-routed blob, a producer's bug) reaches it.
const DefaultMaxRecordBytes = 1 << 20

// Default fills the unset keys.
func (c *Config) Default() {
	if c.Framing == "" {
		c.Framing = string(FramingAuto)
	}
	if c.RawSchema == "" {
		c.RawSchema = DefaultRawSchema
	}
	if c.MaxRecordBytes == nil {
		n := DefaultMaxRecordBytes
		c.MaxRecordBytes = &n
	}
}

// Validate checks the section; key paths are relative to it.
func (c *Config) Validate() error {
	var errs []error
	switch Framing(c.Framing) {
	case FramingAuto, FramingConfluent, FramingSingleObject, FramingRaw:
	default:
		errs = append(errs, fielderr.New("framing", "must be auto, confluent, single-object or raw, not %q", c.Framing))
	}
	if c.SchemaRegistry.URL != "" {
		if u, err := url.Parse(c.SchemaRegistry.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fielderr.New("schema_registry.url", "%q is not an http(s) URL", redact.URL(c.SchemaRegistry.URL)))
		}
	} else if Framing(c.Framing) == FramingConfluent {
		errs = append(errs, fielderr.New("schema_registry.url", "is required with framing confluent"))
	}
	if c.MaxRecordBytes != nil && *c.MaxRecordBytes <= 0 {
		errs = append(errs, fielderr.New("max_record_bytes", "must be a positive number of bytes, not %d", *c.MaxRecordBytes))
	}
	return errors.Join(errs...)
}
