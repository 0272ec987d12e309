package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestGenerate checks the files against what the broker and the tests
// rely on: broker.pem is a PKCS#8 key first, then a chain that ca.pem
// verifies for 127.0.0.1 and not for localhost (the wrong-host-name
// tests), and not against other-ca.pem (the unknown-CA tests); the client
// certificate verifies for client authentication.
//
// Mutation caught: the broker certificate naming DNS "localhost" too
// fails the "localhost" row (tried).
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	if err := generate(dir, now); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pool := func(name string) *x509.CertPool {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(read(name)) {
			t.Fatalf("%s: no certificate", name)
		}
		return p
	}
	brokerPEM := read("broker.pem")
	if b, _ := pem.Decode(brokerPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatal("broker.pem does not start with a PKCS#8 PRIVATE KEY block (Kafka's PEM keystore wants it so)")
	}
	broker, err := tls.X509KeyPair(brokerPEM, brokerPEM)
	if err != nil {
		t.Fatalf("broker.pem: %v", err)
	}
	leaf, err := x509.ParseCertificate(broker.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, host, roots string
		ok                bool
	}{
		{"127.0.0.1", "127.0.0.1", "ca.pem", true},
		{"localhost", "localhost", "ca.pem", false},
		{"other CA", "127.0.0.1", "other-ca.pem", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := leaf.Verify(x509.VerifyOptions{DNSName: tt.host, Roots: pool(tt.roots), CurrentTime: now})
			if (err == nil) != tt.ok {
				t.Fatalf("verify for %s against %s: %v, want ok=%v", tt.host, tt.roots, err, tt.ok)
			}
		})
	}
	client, err := tls.X509KeyPair(read("client.pem"), read("client-key.pem"))
	if err != nil {
		t.Fatalf("client.pem/client-key.pem: %v", err)
	}
	cl, err := x509.ParseCertificate(client.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Verify(x509.VerifyOptions{Roots: pool("ca.pem"), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, CurrentTime: now}); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
}
