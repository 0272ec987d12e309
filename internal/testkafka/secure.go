package testkafka

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The environment deploy/kafka/with-broker.sh sets for its secured
// listeners, beside EnvBrokers (its PLAINTEXT one). All name listeners of
// the same broker, so a topic made through Cluster is seen through each.
const (
	// EnvSASLSSLBrokers is the SASL_SSL listener: PLAIN, SCRAM-SHA-256
	// and SCRAM-SHA-512 over TLS, server authentication only.
	EnvSASLSSLBrokers = "ATRELAY_TEST_SASL_SSL_BROKERS"
	// EnvSSLBrokers is an SSL listener without client authentication.
	EnvSSLBrokers = "ATRELAY_TEST_SSL_BROKERS"
	// EnvMTLSBrokers is an SSL listener that requires a client
	// certificate signed by the CA.
	EnvMTLSBrokers = "ATRELAY_TEST_MTLS_BROKERS"
	// EnvTLSDir holds the PEM files of deploy/kafka/gencerts.
	EnvTLSDir = "ATRELAY_TEST_TLS_DIR"
	// EnvSASLPassword is the password of every SASL user.
	EnvSASLPassword = "ATRELAY_TEST_SASL_PASSWORD"
)

// Secure is a real broker's secured listeners and what a client needs to
// reach them: the files are PEM, made fresh for each broker.
type Secure struct {
	// SASLSSL, SSL and MTLS are the seed brokers of each listener.
	SASLSSL, SSL, MTLS []string
	// CAFile signed the broker's certificate, which names 127.0.0.1 only
	// (so "localhost:<port>" reaches the listener under a wrong name).
	CAFile string
	// CertFile and KeyFile are a client certificate the CA signed: what
	// the MTLS listener requires.
	CertFile, KeyFile string
	// OtherCAFile is a CA that signed nothing the broker presents.
	OtherCAFile string
	// Password is every SASL user's (see User).
	Password string
}

// User returns the SASL_SSL listener's user for mechanism (PLAIN,
// SCRAM-SHA-256, SCRAM-SHA-512), or "" for another. Each user exists for
// its mechanism only (PLAIN users in the listener's JAAS entry, SCRAM users
// in the cluster's metadata), so a client that authenticated used the
// mechanism it asked for.
func (s *Secure) User(mechanism string) string {
	switch mechanism {
	case "PLAIN":
		return "atrelay_plain"
	case "SCRAM-SHA-256":
		return "atrelay_scram256"
	case "SCRAM-SHA-512":
		return "atrelay_scram512"
	}
	return ""
}

// Secure returns the broker's secured listeners, or skips the test when
// there are none: on kfake, or on a broker started without them.
func (c *Cluster) Secure(t testing.TB) *Secure {
	t.Helper()
	dir := os.Getenv(EnvTLSDir)
	s := &Secure{
		SASLSSL:     split(os.Getenv(EnvSASLSSLBrokers)),
		SSL:         split(os.Getenv(EnvSSLBrokers)),
		MTLS:        split(os.Getenv(EnvMTLSBrokers)),
		CAFile:      filepath.Join(dir, "ca.pem"),
		CertFile:    filepath.Join(dir, "client.pem"),
		KeyFile:     filepath.Join(dir, "client-key.pem"),
		OtherCAFile: filepath.Join(dir, "other-ca.pem"),
		Password:    os.Getenv(EnvSASLPassword),
	}
	if !c.Real() || dir == "" || len(s.SASLSSL) == 0 || len(s.SSL) == 0 || len(s.MTLS) == 0 || s.Password == "" {
		t.Skipf("needs a real broker with secured listeners (%s, %s, %s, %s, %s; set by deploy/kafka/with-broker.sh)",
			EnvSASLSSLBrokers, EnvSSLBrokers, EnvMTLSBrokers, EnvTLSDir, EnvSASLPassword)
	}
	return s
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}
