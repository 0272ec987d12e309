package kafkaconn

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/secret"
)

// Config is the configuration's `kafka` section: the consumer group, its
// topics, and how to reach and authenticate to the brokers.
type Config struct {
	Brokers []string `yaml:"brokers"`
	Topic   string   `yaml:"topic"`
	Group   string   `yaml:"group"`
	// StartFrom is where a group with no committed offset starts:
	// earliest or latest.
	StartFrom string `yaml:"start_from"`
	DLQTopic  string `yaml:"dlq_topic"`
	// ParkTopic receives the records of a site that has failed for
	// longer than delivery.park_after; the parking consumer group,
	// <group>.park, delivers them once the site answers again.
	ParkTopic string `yaml:"park_topic"`
	TLS       TLS    `yaml:"tls"`
	SASL      SASL   `yaml:"sasl"`
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
	Mechanism string        `yaml:"mechanism"` // PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
	Username  string        `yaml:"username"`
	Password  secret.Secret `yaml:"password"`
}

// The defaults (SPEC §5).
const (
	DefaultStartFrom = "earliest"
	// DLQSuffix makes the default dead-letter topic: <topic>.dlq.
	DLQSuffix = ".dlq"
	// ParkSuffix makes the default parking topic: <topic>.park.
	ParkSuffix = ".park"
)

// Default fills the unset keys: start_from earliest, dlq_topic
// <topic>.dlq, park_topic <topic>.park.
func (k *Config) Default() {
	if k.StartFrom == "" {
		k.StartFrom = DefaultStartFrom
	}
	if k.DLQTopic == "" && k.Topic != "" {
		k.DLQTopic = k.Topic + DLQSuffix
	}
	if k.ParkTopic == "" && k.Topic != "" {
		k.ParkTopic = k.Topic + ParkSuffix
	}
}

// Validate checks the section; key paths are relative to it. TLS files
// must be readable: a typo in a path fails `atrelay check`, not the first
// connection.
func (k *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) { errs = append(errs, fielderr.New(path, format, args...)) }
	if len(k.Brokers) == 0 {
		add("brokers", "at least one broker (host:port) is required")
	}
	for i, b := range k.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			add(fmt.Sprintf("brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if k.Topic == "" {
		add("topic", "is required")
	}
	if k.Group == "" {
		add("group", "is required")
	}
	if k.StartFrom != "earliest" && k.StartFrom != "latest" {
		add("start_from", "must be earliest or latest, not %q", k.StartFrom)
	}
	if k.DLQTopic == "" {
		add("dlq_topic", "is required")
	} else if k.DLQTopic == k.Topic {
		add("dlq_topic", "must differ from kafka.topic")
	}
	// Without a topic there is no default park_topic: kafka.topic's error
	// says it.
	if k.ParkTopic != "" && (k.ParkTopic == k.Topic || k.ParkTopic == k.DLQTopic) {
		add("park_topic", "must differ from kafka.topic and kafka.dlq_topic")
	}
	if k.TLS.Enabled {
		for _, f := range []struct{ key, path string }{{"tls.ca_file", k.TLS.CAFile}, {"tls.cert_file", k.TLS.CertFile}, {"tls.key_file", k.TLS.KeyFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				add(f.key, "cannot read %s", f.path)
			}
		}
		if (k.TLS.CertFile == "") != (k.TLS.KeyFile == "") {
			add("tls", "cert_file and key_file go together")
		}
	}
	switch k.SASL.Mechanism {
	case "":
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if k.SASL.Username == "" || k.SASL.Password == "" {
			add("sasl", "username and password are required with mechanism %s", k.SASL.Mechanism)
		}
	default:
		add("sasl.mechanism", "must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not %q", k.SASL.Mechanism)
	}
	return errors.Join(errs...)
}
