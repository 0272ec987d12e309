// Command gencerts writes the PEM files the test broker's TLS listeners and
// their clients use: a private CA, a broker certificate for 127.0.0.1 signed
// by it, a client certificate signed by it (mutual TLS), and a second CA
// that signs nothing the broker presents (the "unknown CA" tests).
//
// Usage: gencerts DIR
//
// DIR receives, all valid from an hour ago for a day:
//
//	ca.pem           the CA certificate: the broker's truststore, clients' ca_file
//	broker.pem       the broker's PKCS#8 key and its certificate chain, the
//	                 form Kafka reads with ssl.keystore.type=PEM
//	client.pem       the client certificate (cert_file), signed by the CA
//	client-key.pem   its PKCS#8 key (key_file)
//	other-ca.pem     a CA nobody uses: a client trusting it rejects the broker
//
// The broker certificate names the IP address 127.0.0.1 and no host name,
// so a client dialing "localhost" (which resolves to the same listener)
// fails host name verification: the "wrong host name" tests.
//
// Keys are ECDSA P-256: quick to make, and Kafka's PEM keystore reads them.
// Nothing here is secret beyond the test run: the directory is deleted with
// the broker's.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gencerts DIR")
		os.Exit(2)
	}
	if err := generate(os.Args[1], time.Now()); err != nil {
		fmt.Fprintf(os.Stderr, "gencerts: %v\n", err)
		os.Exit(1)
	}
}

// authority is a CA that can sign certificates.
type authority struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// generate writes the files listed in the package doc into dir.
func generate(dir string, now time.Time) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := newCA("atrelay test CA", now)
	if err != nil {
		return err
	}
	other, err := newCA("atrelay untrusted CA", now)
	if err != nil {
		return err
	}
	brokerKey, brokerCert, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "atrelay test broker"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, now)
	if err != nil {
		return fmt.Errorf("broker certificate: %w", err)
	}
	clientKey, clientCert, err := ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "atrelay"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, now)
	if err != nil {
		return fmt.Errorf("client certificate: %w", err)
	}
	files := []struct {
		name   string
		blocks []*pem.Block
	}{
		{"ca.pem", []*pem.Block{certBlock(ca.cert.Raw)}},
		{"other-ca.pem", []*pem.Block{certBlock(other.cert.Raw)}},
		// Kafka's PEM keystore wants the key first, then the chain.
		{"broker.pem", []*pem.Block{brokerKey, certBlock(brokerCert), certBlock(ca.cert.Raw)}},
		{"client.pem", []*pem.Block{certBlock(clientCert)}},
		{"client-key.pem", []*pem.Block{clientKey}},
	}
	var errs []error
	for _, f := range files {
		var out []byte
		for _, b := range f.blocks {
			out = append(out, pem.EncodeToMemory(b)...)
		}
		errs = append(errs, os.WriteFile(filepath.Join(dir, f.name), out, 0o600))
	}
	return errors.Join(errs...)
}

// newCA makes a self-signed CA certificate and its key.
func newCA(name string, now time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("CA %s: %w", name, err)
	}
	return &authority{cert: cert, key: key}, nil
}

// sign makes a key and a certificate from tmpl (its subject, names and
// usages), signed by the CA; the key comes back as a PKCS#8 PEM block.
func (a *authority) sign(tmpl *x509.Certificate, now time.Time) (*pem.Block, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}, der, nil
}

func certBlock(der []byte) *pem.Block { return &pem.Block{Type: "CERTIFICATE", Bytes: der} }

// serial returns a random 128-bit serial number, so that no two
// certificates of a run (or of two runs) share one.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		// crypto/rand does not fail on Linux; a fixed serial still works.
		return big.NewInt(1)
	}
	return n
}
