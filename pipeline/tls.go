package pipeline

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"os"

	"github.com/atrelay/atrelay/internal/fielderr"
)

// CollectTLS is an integration's `tls` section: how the collect client
// verifies the collect server's certificate. Unset, the system's roots do,
// as for any HTTPS client; verification is never turned off.
type CollectTLS struct {
	// CAFile is a PEM file of CA certificates trusted, instead of the
	// system's roots, for this integration's collect endpoint: a private
	// CA (a test collector, a TLS-intercepting proxy).
	CAFile string `yaml:"ca_file"`
}

// validate checks the section against its integration's endpoint; key
// paths are relative to the integration.
func (c CollectTLS) validate(in *Integration) error {
	if c.CAFile == "" {
		return nil
	}
	if _, plain, err := in.Endpoint(); err == nil && plain {
		return fielderr.New("tls.ca_file", "the collect endpoint is plain HTTP: there is no certificate to verify")
	}
	if err := c.appendTo(x509.NewCertPool()); err != nil {
		return fielderr.New("tls.ca_file", "%v", err)
	}
	return nil
}

// appendTo adds CAFile's certificates to pool.
func (c CollectTLS) appendTo(pool *x509.CertPool) error {
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		return fmt.Errorf("cannot read it: %w", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no PEM certificate in %s", c.CAFile)
	}
	return nil
}

// CollectRoots returns the CA pools of the integrations with a
// tls.ca_file, by collect host (host or host:port, as in the endpoint):
// what the collect client trusts for that host instead of the system's
// roots. Integrations sharing a host share a pool holding every one of
// their files. Errors name the key path from the integrations list.
func CollectRoots(ins []Integration) (map[string]*x509.CertPool, error) {
	roots := map[string]*x509.CertPool{}
	for i := range ins {
		in := &ins[i]
		if in.TLS.CAFile == "" {
			continue
		}
		ep, _, err := in.Endpoint()
		if err != nil {
			return nil, fielderr.New(fmt.Sprintf("[%d].collect_domain", i), "%v", err)
		}
		u, err := url.Parse(ep)
		if err != nil {
			return nil, fielderr.New(fmt.Sprintf("[%d].collect_domain", i), "%v", err)
		}
		pool := roots[u.Host]
		if pool == nil {
			pool = x509.NewCertPool()
			roots[u.Host] = pool
		}
		if err := in.TLS.appendTo(pool); err != nil {
			return nil, fielderr.New(fmt.Sprintf("[%d].tls.ca_file", i), "%v", err)
		}
	}
	return roots, nil
}
