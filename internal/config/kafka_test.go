package config

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/kafkaconn"
)

// TestGroupTimeouts: kafka.session_timeout, rebalance_timeout and
// heartbeat_interval reach the Kafka client kafkaconn.Options builds (the
// relay's consumer, which reads the rebalance timeout back from it for
// the revoke drain), with their defaults when unset: franz-go's 45s, 60s
// and 3s, the heartbeat cut to a third of a short session.
//
// Mutations caught (each applied once, seen failing, reverted): Options
// not appending kgo.SessionTimeout fails "set", "short session" and "long
// session"; Default leaving the heartbeat at 3s whatever the session fails
// "short session" (3s is half of 6s, two lost heartbeats from expiry), and
// TestBadFiles' session_timeout_low with a second error.
func TestGroupTimeouts(t *testing.T) {
	tests := []struct {
		name                          string
		keys                          string
		session, rebalance, heartbeat time.Duration
	}{
		{"defaults", "", 45 * time.Second, 60 * time.Second, 3 * time.Second},
		{"set", "session_timeout: 20s, rebalance_timeout: 2m, heartbeat_interval: 500ms", 20 * time.Second, 2 * time.Minute, 500 * time.Millisecond},
		{"short session", "session_timeout: 6s", 6 * time.Second, 60 * time.Second, 2 * time.Second},
		{"long session", "session_timeout: 30m", 30 * time.Minute, 60 * time.Second, 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(`kafka: {brokers: ["127.0.0.1:9092"], topic: t, group: g, `+tt.keys+`}
integrations:
  - {name: a, app_id: x, site_id: 1, collect_domain: logs1412.xiti.com, events: [TRIAL_STARTED]}
`), env(nil))
			if err != nil {
				t.Fatal(err)
			}
			opts, err := kafkaconn.Options(cfg.Kafka)
			if err != nil {
				t.Fatal(err)
			}
			// No request is sent: a client connects on first use.
			cl, err := kgo.NewClient(append(opts, kgo.ConsumerGroup(cfg.Kafka.Group), kgo.ConsumeTopics(cfg.Kafka.Topic))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			for _, c := range []struct {
				name string
				opt  any
				want time.Duration
			}{
				{"session timeout", kgo.SessionTimeout, tt.session},
				{"rebalance timeout", kgo.RebalanceTimeout, tt.rebalance},
				{"heartbeat interval", kgo.HeartbeatInterval, tt.heartbeat},
			} {
				if got := cl.OptValue(c.opt); got != c.want {
					t.Errorf("%s = %v, want %v", c.name, got, c.want)
				}
			}
		})
	}
}
