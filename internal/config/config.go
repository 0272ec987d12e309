// Package config loads atrelay's YAML configuration (SPEC §5): environment
// expansion, strict keys, and validation errors that name the key. It only
// composes: each section is a Config owned by the package that uses it,
// with its own defaults (Default) and rules (Validate); this package holds
// the rules that span sections.
package config

import (
	"errors"

	"github.com/atrelay/atrelay/codec"
	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/relay"
	"github.com/atrelay/atrelay/internal/telemetry"
	"github.com/atrelay/atrelay/pipeline"
	"github.com/atrelay/atrelay/pipeline/batch"
	"github.com/atrelay/atrelay/sinks/atinternet"
)

// Config is the whole configuration file.
type Config struct {
	Kafka        kafkaconn.Config       `yaml:"kafka"`
	Codec        codec.Config           `yaml:"codec"`
	Delivery     Delivery               `yaml:"delivery"`
	Integrations []pipeline.Integration `yaml:"integrations"`
	Telemetry    telemetry.Config       `yaml:"telemetry"`
}

// Delivery is the `delivery` section: one flat set of keys for the
// operator, owned by three packages.
type Delivery struct {
	// Batch is max_events, max_bytes and linger.
	Batch batch.Config `yaml:",inline"`
	// HTTP is request_timeout.
	HTTP atinternet.HTTP `yaml:",inline"`
	// Relay is concurrency, backoff, max_buffered_events,
	// commit_interval and shutdown_timeout.
	Relay relay.Delivery `yaml:",inline"`
}

// Default fills every unset value with its default, section by section.
func (c *Config) Default() {
	c.Kafka.Default()
	c.Codec.Default()
	c.Delivery.Batch.Default()
	c.Delivery.HTTP.Default()
	c.Delivery.Relay.Default()
	for i := range c.Integrations {
		c.Integrations[i].Default()
	}
	c.Telemetry.Default()
}

// Validate checks every section and returns all problems at once, each a
// *fielderr.Error naming its key path.
func (c *Config) Validate() error {
	d := &c.Delivery
	errs := []error{
		fielderr.Prefix("kafka", c.Kafka.Validate()),
		fielderr.Prefix("codec", c.Codec.Validate()),
		fielderr.Prefix("delivery", d.Batch.Validate()),
		fielderr.Prefix("delivery", d.HTTP.Validate()),
		fielderr.Prefix("delivery", d.Relay.Validate()),
		fielderr.Prefix("integrations", pipeline.ValidateAll(c.Integrations)),
		fielderr.Prefix("telemetry", c.Telemetry.Validate()),
	}
	// A batch must fit in the buffer, or it could never fill.
	if d.Relay.MaxBufferedEvents > 0 && d.Batch.MaxEvents > d.Relay.MaxBufferedEvents {
		errs = append(errs, fielderr.New("delivery.max_buffered_events", "must be at least max_events (%d)", d.Batch.MaxEvents))
	}
	return errors.Join(errs...)
}
