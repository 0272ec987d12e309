package atinternet

import (
	"crypto/tls"
	"crypto/x509"
	"maps"
	"net/http"
	"slices"
)

// hostRoots sends each request through the transport of its host: the one
// trusting that host's private CA (integrations[].tls.ca_file), or the
// default one, trusting the system's roots. A transport holds one TLS
// configuration, hence one per host with a CA of its own; every one of
// them verifies.
type hostRoots struct {
	def   http.RoundTripper
	hosts map[string]http.RoundTripper
}

// withRoots returns base when roots is empty, or else a round tripper that
// sends the requests to a host of roots (host or host:port, as in the
// collect URL) through a clone of base trusting that host's pool only.
func withRoots(base *http.Transport, roots map[string]*x509.CertPool) http.RoundTripper {
	if len(roots) == 0 {
		return base
	}
	h := &hostRoots{def: base, hosts: make(map[string]http.RoundTripper, len(roots))}
	for host, pool := range roots {
		t := base.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{}
		}
		t.TLSClientConfig.RootCAs = pool
		h.hosts[host] = t
	}
	return h
}

// RoundTrip implements http.RoundTripper.
func (h *hostRoots) RoundTrip(r *http.Request) (*http.Response, error) {
	if t, ok := h.hosts[r.URL.Host]; ok {
		return t.RoundTrip(r)
	}
	return h.def.RoundTrip(r)
}

// CloseIdleConnections closes every transport's idle connections, as
// http.Client.CloseIdleConnections expects of its transport.
func (h *hostRoots) CloseIdleConnections() {
	type closer interface{ CloseIdleConnections() }
	for _, t := range append([]http.RoundTripper{h.def}, slices.Collect(maps.Values(h.hosts))...) {
		if c, ok := t.(closer); ok {
			c.CloseIdleConnections()
		}
	}
}
