package telemetry

import (
	"errors"
	"net"
	"time"

	"github.com/atrelay/atrelay/internal/fielderr"
)

// Config is the configuration's `telemetry` section: the service's name,
// where its metrics and health endpoints listen ("off" for none), and how
// long /readyz tolerates silence from Kafka.
type Config struct {
	ServiceName   string `yaml:"service_name"`
	MetricsListen string `yaml:"metrics_listen"`
	HealthListen  string `yaml:"health_listen"`
	// ReadyTimeout is how long the member may go without a successful
	// fetch or group request (join, sync, heartbeat) before /readyz
	// answers 503, even while it still owns partitions.
	ReadyTimeout time.Duration `yaml:"ready_timeout"`
	// RecordMessageKey records each record's Kafka key on its spans
	// (messaging.kafka.message.key). Off by default: the key of a
	// Purchasely event is the visitor's id.
	RecordMessageKey bool `yaml:"record_message_key"`
}

// The defaults (SPEC §5). The listeners bind every interface, so that
// in a container a Prometheus scrape and the kubelet's probes reach them
// with no configuration; set 127.0.0.1:… (or off) on a shared host.
const (
	DefaultServiceName   = "atrelay"
	DefaultMetricsListen = ":9464"
	DefaultHealthListen  = ":8080"
	// Off turns a listener off.
	Off = "off"
	// DefaultReadyTimeout is ready_timeout's default.
	DefaultReadyTimeout = 30 * time.Second
	// MinReadyTimeout is ready_timeout's floor: a member in a group
	// heartbeats every 3 s and an idle fetch waits up to 5 s for data, so
	// a shorter timeout would flap on a healthy, quiet topic.
	MinReadyTimeout = 5 * time.Second
)

// Default fills the unset keys; record_message_key's default, false, is
// its zero value.
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
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = DefaultReadyTimeout
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
	if c.ReadyTimeout < MinReadyTimeout {
		errs = append(errs, fielderr.New("ready_timeout", "must be at least %s (heartbeats run every 3s, an idle fetch waits up to 5s), not %s", MinReadyTimeout, c.ReadyTimeout))
	}
	return errors.Join(errs...)
}
