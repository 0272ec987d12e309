package pipeline_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/atrelay/atrelay/internal/testtls"
	"github.com/atrelay/atrelay/pipeline"
)

// TestCollectTLSValidate: integrations[].tls.ca_file must be a readable
// PEM file of certificates, on an HTTPS endpoint; each error names the
// key. Mutation caught: validate not reading the file (only the plain
// HTTP check) passes the "missing" and "not PEM" rows.
func TestCollectTLSValidate(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := testtls.NewCA(t).File(t)
	tests := []struct {
		name, domain, caFile, want string
	}{
		{"unset", "https://collect.example", "", ""},
		{"good", "collect.example", good, ""},
		{"missing", "collect.example", filepath.Join(dir, "absent.pem"), "tls.ca_file: cannot read it: open " + filepath.Join(dir, "absent.pem")},
		{"not PEM", "collect.example", notPEM, "tls.ca_file: no PEM certificate in " + notPEM},
		{"plain http", "http://127.0.0.1:8080", good, "tls.ca_file: the collect endpoint is plain HTTP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := pipeline.Integration{Name: "a", AppID: "x", SiteID: 1, CollectDomain: tt.domain, Events: []string{"TRIAL_STARTED"},
				TLS: pipeline.CollectTLS{CAFile: tt.caFile}}
			in.Default()
			err := in.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}
