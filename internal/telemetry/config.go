package telemetry

import (
	"errors"
	"net"

	"github.com/atrelay/atrelay/internal/fielderr"
)

// Config is the configuration's `telemetry` section: the service's name
// and where its metrics and health endpoints listen ("off" for none).
type Config struct {
	ServiceName   string `yaml:"service_name"`
	MetricsListen string `yaml:"metrics_listen"`
	HealthListen  string `yaml:"health_listen"`
}

// The defaults (SPEC §5).
const (
	DefaultServiceName   = "atrelay"
	DefaultMetricsListen = "127.0.0.1:9464"
	DefaultHealthListen  = "127.0.0.1:8080"
	// Off turns a listener off.
	Off = "off"
)

// Default fills the unset keys.
func (c *Config) Default() {
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
	}
	if c.MetricsListen == "" {
		c.MetricsListen = DefaultMetricsListen
	}
	if c.HealthListen == "" {
		c.HealthListen = DefaultHealthListen
	}
}

// Validate checks the section; key paths are relative to it.
func (c *Config) Validate() error {
	var errs []error
	for _, l := range []struct{ key, addr string }{{"metrics_listen", c.MetricsListen}, {"health_listen", c.HealthListen}} {
		if l.addr == "" || l.addr == Off {
			continue
		}
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			errs = append(errs, fielderr.New(l.key, "%q is not host:port (or off)", l.addr))
		}
	}
	return errors.Join(errs...)
}
