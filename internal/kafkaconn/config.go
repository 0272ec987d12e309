package kafkaconn

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

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
	// SessionTimeout is how long the group coordinator waits without a
	// heartbeat before it removes a member and gives its partitions to the
	// others: how long the partitions of a killed or hung member stay
	// idle.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// RebalanceTimeout is how long the coordinator waits for every member
	// to rejoin at a rebalance; the relay drains a revoked partition for
	// at most half of it (and at most delivery.shutdown_timeout).
	RebalanceTimeout time.Duration `yaml:"rebalance_timeout"`
	// HeartbeatInterval is how often a member heartbeats; unset, it is
	// min(3s, session_timeout/3), so that two lost heartbeats do not end
	// a session.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	TLS               TLS           `yaml:"tls"`
	SASL              SASL          `yaml:"sasl"`
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
	// DefaultSessionTimeout and DefaultRebalanceTimeout are franz-go's
	// (and the Java client's) defaults.
	DefaultSessionTimeout   = 45 * time.Second
	DefaultRebalanceTimeout = 60 * time.Second
	// DefaultHeartbeatInterval is franz-go's default, used when it is at
	// most a third of the session timeout.
	DefaultHeartbeatInterval = 3 * time.Second
	// MinSessionTimeout and MaxSessionTimeout are the brokers' default
	// group.min.session.timeout.ms and group.max.session.timeout.ms: a
	// broker refuses a member whose session timeout is outside them, and
	// the client would retry its join for ever.
	MinSessionTimeout = 6 * time.Second
	MaxSessionTimeout = 30 * time.Minute
	// MinRebalanceTimeout leaves the revoke drain (half of it) half a
	// second; MaxRebalanceTimeout bounds how long one member that does
	// not rejoin can hold the whole group still.
	MinRebalanceTimeout = time.Second
	MaxRebalanceTimeout = 30 * time.Minute
)

// Default fills the unset keys: start_from earliest, dlq_topic
// <topic>.dlq, park_topic <topic>.park, session_timeout 45s,
// rebalance_timeout 60s, heartbeat_interval min(3s, session_timeout/3).
func (k *Config) Default() {
	if k.SessionTimeout == 0 {
		k.SessionTimeout = DefaultSessionTimeout
	}
	if k.RebalanceTimeout == 0 {
		k.RebalanceTimeout = DefaultRebalanceTimeout
	}
	// A negative session timeout is left for Validate to name; a third
	// of it would hide it behind a heartbeat error.
	if k.HeartbeatInterval == 0 && k.SessionTimeout > 0 {
		k.HeartbeatInterval = min(DefaultHeartbeatInterval, k.SessionTimeout/3)
	}
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
	if k.SessionTimeout < MinSessionTimeout || k.SessionTimeout > MaxSessionTimeout {
		add("session_timeout", "must be between %s and %s (the brokers' default group.min/max.session.timeout.ms), not %s",
			MinSessionTimeout, MaxSessionTimeout, k.SessionTimeout)
	}
	if k.RebalanceTimeout < MinRebalanceTimeout || k.RebalanceTimeout > MaxRebalanceTimeout {
		add("rebalance_timeout", "must be between %s and %s, not %s", MinRebalanceTimeout, MaxRebalanceTimeout, k.RebalanceTimeout)
	}
	switch {
	case k.HeartbeatInterval <= 0:
		add("heartbeat_interval", "must be positive")
	case k.HeartbeatInterval >= k.SessionTimeout && k.SessionTimeout > 0:
		add("heartbeat_interval", "must be below kafka.session_timeout (%s), not %s", k.SessionTimeout, k.HeartbeatInterval)
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
