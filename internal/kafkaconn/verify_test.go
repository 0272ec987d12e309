package kafkaconn_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/atrelay/atrelay/internal/kafkaconn"
	"github.com/atrelay/atrelay/internal/secret"
	"github.com/atrelay/atrelay/internal/testkafka"
)

// TestVerifySecuredListeners connects with every kind of kafka.tls and
// kafka.sasl setting to the real broker's secured listeners: the right
// settings reach the broker (Verify says nothing, and a client built from
// Options reads its metadata); each wrong one fails Verify at once with an
// *AccessError that names the cause and the keys to fix, and the broker
// that refused.
//
// Mutations caught (each tried): tlsConfig not setting RootCAs from
// ca_file fails every TLS row with "unknown authority"; Options building
// the SCRAM-SHA-256 mechanism for SCRAM-SHA-512 fails the SCRAM-SHA-512
// row (its user exists for SHA-512 only); Explain without the
// x509.HostnameError case reports the wrong host row as a generic
// verification failure, without the kafka.brokers hint.
func TestVerifySecuredListeners(t *testing.T) {
	kafka := testkafka.New(t)
	sec := kafka.Secure(t)
	sasl := func(mech, password string) kafkaconn.SASL {
		return kafkaconn.SASL{Mechanism: mech, Username: sec.User(mech), Password: secret.Secret(password)}
	}
	tlsCA := kafkaconn.TLS{Enabled: true, CAFile: sec.CAFile}
	mtls := kafkaconn.TLS{Enabled: true, CAFile: sec.CAFile, CertFile: sec.CertFile, KeyFile: sec.KeyFile}
	localhost := func(addrs []string) []string {
		_, port, _ := net.SplitHostPort(addrs[0])
		return []string{net.JoinHostPort("localhost", port)}
	}
	tests := []struct {
		name    string
		brokers []string
		tls     kafkaconn.TLS
		sasl    kafkaconn.SASL
		// wantCause is in the AccessError's Cause, wantKeys in its Keys;
		// "" means access must work.
		wantCause, wantKeys string
	}{
		{"tls", sec.SSL, tlsCA, kafkaconn.SASL{}, "", ""},
		{"mtls", sec.MTLS, mtls, kafkaconn.SASL{}, "", ""},
		{"sasl plain", sec.SASLSSL, tlsCA, sasl("PLAIN", sec.Password), "", ""},
		{"sasl scram-sha-256", sec.SASLSSL, tlsCA, sasl("SCRAM-SHA-256", sec.Password), "", ""},
		{"sasl scram-sha-512", sec.SASLSSL, tlsCA, sasl("SCRAM-SHA-512", sec.Password), "", ""},

		{"wrong password plain", sec.SASLSSL, tlsCA, sasl("PLAIN", "wrong"), "SASL authentication failed", "kafka.sasl.password"},
		{"wrong password scram", sec.SASLSSL, tlsCA, sasl("SCRAM-SHA-512", "wrong"), "SASL authentication failed", "kafka.sasl.password"},
		{"unknown CA", sec.SASLSSL, kafkaconn.TLS{Enabled: true, CAFile: sec.OtherCAFile}, sasl("PLAIN", sec.Password), "authority the client does not trust", "kafka.tls.ca_file"},
		{"system roots", sec.SSL, kafkaconn.TLS{Enabled: true}, kafkaconn.SASL{}, "authority the client does not trust", "kafka.tls.ca_file"},
		{"wrong host name", localhost(sec.SASLSSL), tlsCA, sasl("PLAIN", sec.Password), "does not name the host dialed", "kafka.brokers"},
		{"mtls without a client certificate", sec.MTLS, tlsCA, kafkaconn.SASL{}, "refused the handshake", "kafka.tls.cert_file"},

		{"plaintext to a tls listener", sec.SSL, kafkaconn.TLS{}, kafkaconn.SASL{}, "speaks TLS and the client does not", "kafka.tls.enabled"},
		{"sasl to an ssl listener", sec.SSL, tlsCA, sasl("PLAIN", sec.Password), "takes no SASL", "kafka.sasl.mechanism"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := kafkaconn.Config{Brokers: tt.brokers, TLS: tt.tls, SASL: tt.sasl}
			start := time.Now()
			err := kafkaconn.Verify(context.Background(), cfg)
			took := time.Since(start)
			if tt.wantCause == "" {
				if err != nil {
					t.Fatalf("Verify() = %v, want nil", err)
				}
				if err := brokerMetadata(t, cfg); err != nil {
					t.Fatalf("metadata through %v: %v", tt.brokers, err)
				}
				return
			}
			var access *kafkaconn.AccessError
			if !errors.As(err, &access) {
				t.Fatalf("Verify() = %v (after %s), want an *AccessError", err, took.Round(time.Millisecond))
			}
			t.Logf("after %s: %v", took.Round(time.Millisecond), err)
			if !strings.Contains(access.Cause, tt.wantCause) || !strings.Contains(access.Keys, tt.wantKeys) {
				t.Errorf("cause %q keys %q, want %q and %q", access.Cause, access.Keys, tt.wantCause, tt.wantKeys)
			}
			if host, port, _ := net.SplitHostPort(tt.brokers[0]); !strings.Contains(err.Error(), "broker "+host) || !strings.Contains(err.Error(), port) {
				t.Errorf("the error does not name the broker %s: %v", tt.brokers[0], err)
			}
			if strings.Contains(err.Error(), sec.Password) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// TestVerifyLeavesOutagesToTheService: a broker that is down (nothing
// listens) or not reached before ctx ends is not an access error: Verify
// returns nil, and the service waits for its brokers as it always has.
//
// Mutation caught: Verify returning the request's error when Explain
// finds no access failure fails both rows.
func TestVerifyLeavesOutagesToTheService(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
	}{{"nothing listens", context.Background()}, {"ctx ended", cancelled}} {
		t.Run(tt.name, func(t *testing.T) {
			if err := kafkaconn.Verify(tt.ctx, kafkaconn.Config{Brokers: []string{down}}); err != nil {
				t.Fatalf("Verify() = %v, want nil", err)
			}
		})
	}
}

// TestVerifyLeavesClosedConnectionsToTheService: TLS to a plaintext
// listener looks, to the client, like a broker that closes every
// connection at once — as a broker in trouble or a proxy without a backend
// does. Verify leaves it to the service's retries (returns nil), and
// Explain, which `check --connect` prints through, adds the hint.
//
// Mutation caught: Explain returning an *AccessError for
// kgo.ErrFirstReadEOF fails the first check (tried: it also made
// TestShutdownWhileJoining/brokers_refuse exit at start).
func TestVerifyLeavesClosedConnectionsToTheService(t *testing.T) {
	kafka := testkafka.New(t)
	sec := kafka.Secure(t)
	cfg := kafkaconn.Config{Brokers: kafka.Brokers(), TLS: kafkaconn.TLS{Enabled: true, CAFile: sec.CAFile}}
	if err := kafkaconn.Verify(context.Background(), cfg); err != nil {
		t.Fatalf("Verify() = %v, want nil", err)
	}
	err := brokerMetadata(t, cfg)
	if err == nil {
		t.Fatal("TLS to the PLAINTEXT listener worked")
	}
	if got := kafkaconn.Explain(err); !strings.Contains(got.Error(), "closed the connection at once") || !strings.Contains(got.Error(), "kafka.tls") {
		t.Errorf("Explain() = %v, want the hint", got)
	}
}

// brokerMetadata asks cfg's brokers for their metadata through a client
// built as the service builds it (kafkaconn.Options).
func brokerMetadata(t *testing.T, cfg kafkaconn.Config) error {
	t.Helper()
	opts, err := kafkaconn.Options(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	return err
}
