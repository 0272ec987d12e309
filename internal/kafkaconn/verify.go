package kafkaconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// VerifyTimeout bounds Verify: a broker that has not answered by then is
// left to the service, which waits for its brokers anyway.
const VerifyTimeout = 10 * time.Second

// AccessError is a connection to the brokers that no retry can fix: the
// configuration (or the brokers') must change. Cause says what failed in
// an operator's words, Keys the configuration keys to look at; Err is the
// client's own error, with the broker it came from when known.
type AccessError struct {
	Cause string
	Keys  string
	Err   error
}

// Error reads "kafka: <cause> (check <keys>): <client error>".
func (e *AccessError) Error() string {
	return fmt.Sprintf("kafka: %s (check %s): %v", e.Cause, e.Keys, e.Err)
}

// Unwrap returns the client's error (errors.Is kerr.SaslAuthenticationFailed,
// errors.As x509.HostnameError, …).
func (e *AccessError) Unwrap() error { return e.Err }

// Explain returns err as an *AccessError when it is one of the failures
// no retry fixes (a rejected certificate, a refused TLS handshake, a
// failed SASL authentication, a TLS listener reached in plaintext); a
// connection the broker closed at once comes back with a hint (it may be
// TLS to a plaintext listener, or a broker in trouble); any other err
// comes back unchanged.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var (
		access   *AccessError
		unknown  x509.UnknownAuthorityError
		host     x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		op       *net.OpError
		firstEOF *kgo.ErrFirstReadEOF
	)
	wrap := func(cause, keys string) error { return &AccessError{Cause: cause, Keys: keys, Err: err} }
	switch {
	case errors.As(err, &access):
		return err
	case errors.As(err, &unknown):
		return wrap("TLS: the broker's certificate is signed by an authority the client does not trust", "kafka.tls.ca_file")
	case errors.As(err, &host):
		return wrap("TLS: the broker's certificate does not name the host dialed", "kafka.brokers against the names in the broker's certificate and its advertised.listeners")
	case errors.As(err, &invalid):
		return wrap("TLS: the broker's certificate is not valid (expired, not yet valid, or not for a server)", "the broker's certificate and kafka.tls.ca_file")
	case errors.As(err, &verify):
		return wrap("TLS: the broker's certificate failed verification", "kafka.tls.ca_file")
	case errors.As(err, &record):
		return wrap("TLS: the broker did not answer in TLS (a plaintext or SASL_PLAINTEXT listener?)", "kafka.tls.enabled and kafka.brokers")
	case errors.As(err, &op) && op.Op == "remote error":
		// crypto/tls reports an alert from the peer so; its type is
		// unexported.
		return wrap("TLS: the broker refused the handshake (a listener requiring a client certificate?)", "kafka.tls.cert_file and kafka.tls.key_file")
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return wrap("SASL authentication failed", "kafka.sasl.username, kafka.sasl.password and kafka.sasl.mechanism")
	case errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		return wrap("SASL: the listener takes no SASL, or not this mechanism", "kafka.sasl.mechanism and kafka.brokers")
	case errors.As(err, &firstEOF):
		// A listener expecting another protocol does this, but so do a
		// broker in trouble and a proxy without a backend: a hint, not an
		// AccessError, so that Verify leaves it to the service's retries.
		return fmt.Errorf("kafka: the broker closed the connection at once; if it persists, its listener may expect TLS or SASL the configuration does not use, or the reverse (check kafka.tls and kafka.sasl against the listener of kafka.brokers): %w", err)
	case strings.Contains(err.Error(), "speaking to a tls endpoint"):
		// franz-go's words when a plaintext client reads a TLS alert;
		// the error has no type of its own.
		return wrap("the broker's listener speaks TLS and the client does not", "kafka.tls.enabled and kafka.brokers")
	}
	return err
}

// Verify asks the brokers of cfg for their metadata, as the service
// connects, to fail at start on what no retry fixes (see Explain): it
// returns that *AccessError. A broker that is down, slow or still
// starting is not its concern: it returns nil then, and the service waits
// for the brokers as it does when they go away later. It takes at most
// VerifyTimeout, and returns nil at once when ctx has ended.
func Verify(ctx context.Context, cfg Config) error {
	if ctx.Err() != nil {
		return nil
	}
	opts, err := Options(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, VerifyTimeout)
	defer cancel()
	// The request's error may be a timeout hiding why: the connection's
	// own failures say it.
	var conn connFailures
	cl, err := kgo.NewClient(append(opts, kgo.WithHooks(&conn))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	if err == nil {
		return nil
	}
	// The connections' errors first: they name their broker.
	var access *AccessError
	for _, e := range append(conn.all(), err) {
		if errors.As(Explain(e), &access) {
			return access
		}
	}
	return nil
}

// connFailures keeps the client's failed connections and requests, each
// naming its broker.
type connFailures struct {
	mu   sync.Mutex
	errs []error
}

var (
	_ kgo.HookBrokerConnect = new(connFailures)
	_ kgo.HookBrokerE2E     = new(connFailures)
)

func (c *connFailures) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	c.add(meta, err)
}

func (c *connFailures) OnBrokerE2E(meta kgo.BrokerMetadata, _ int16, e2e kgo.BrokerE2E) {
	c.add(meta, e2e.Err())
}

func (c *connFailures) add(meta kgo.BrokerMetadata, err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// A client retrying one failure for VerifyTimeout makes many; the
	// first few say it all.
	if len(c.errs) < 16 {
		c.errs = append(c.errs, fmt.Errorf("broker %s: %w", net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), err))
	}
}

func (c *connFailures) all() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]error(nil), c.errs...)
}
