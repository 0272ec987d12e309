package config

import (
	"bytes"
	"strings"
	"testing"

	"github.com/atrelay/atrelay/internal/fielderr"
)

// TestExpansionErrorsHideSecrets: a password that cannot be expanded (an
// unterminated "${", or a "${…}" that is not a reference, most likely a
// literal "$" in the password) fails with an error naming the key and what
// is wrong, without quoting any of its text; other keys still quote
// theirs, to show where the problem is.
//
// Mutation caught: secretAt always false (the error quotes the text after
// "${", which is the password's) fails every secret row.
func TestExpansionErrorsHideSecrets(t *testing.T) {
	const pw = "Pw-7d1c"
	file := func(group, saslPW, registryPW string) []byte {
		return []byte(`kafka: {brokers: ["b:9092"], topic: t, group: "` + group + `", sasl: {mechanism: PLAIN, username: u, password: "` + saslPW + `"}}
codec: {schema_registry: {url: "http://r:8081", username: u, password: "` + registryPW + `"}}
integrations: [{name: a, app_id: x, site_id: 1, collect_domain: d, events: [TRIAL_STARTED]}]
`)
	}
	tests := []struct {
		name, key string
		data      []byte
		want      string
		quoted    bool // the error may quote the value
	}{
		{"kafka, unterminated", "kafka.sasl.password", file("g", "a${"+pw, "p"), "kafka.sasl.password: unterminated ${", false},
		{"kafka, not a reference", "kafka.sasl.password", file("g", "a${."+pw+"}", "p"), "kafka.sasl.password: not a reference", false},
		{"registry, unterminated", "codec.schema_registry.password", file("g", "p", "${"+pw), "codec.schema_registry.password: unterminated ${", false},
		{"registry, not a reference", "codec.schema_registry.password", file("g", "p", "${:"+pw+"}"), "codec.schema_registry.password: not a reference", false},
		{"not a secret, unterminated", "kafka.group", file("a${"+pw, "p", "p"), `kafka.group: "${` + pw + `": unterminated ${`, true},
		{"not a secret, not a reference", "kafka.group", file("${."+pw+"}", "p", "p"), "kafka.group: ${." + pw + "}: not a reference", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.data, env(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if n := len(fielderr.Flatten(err)); n != 1 {
				t.Errorf("%d errors, want 1: %v", n, err)
			}
			if leaked := strings.Contains(err.Error(), pw); leaked != tt.quoted {
				t.Errorf("error %q: quotes the value: %v, want %v", err, leaked, tt.quoted)
			}
		})
	}
}

// TestMarshalHidesRegistryURLPassword: `check --print` shows a registry
// URL written with credentials (http://user:pw@host) with its userinfo as
// REDACTED, and what it prints parses back to itself.
//
// Mutation caught: Marshal without redact.URL prints the password.
func TestMarshalHidesRegistryURLPassword(t *testing.T) {
	cfg, err := Parse([]byte(`kafka: {brokers: ["b:9092"], topic: t, group: g}
codec: {schema_registry: {url: "https://key:Pw-31e9@registry.example.com:8081"}}
integrations: [{name: a, app_id: x, site_id: 1, collect_domain: d, events: [TRIAL_STARTED]}]
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("Pw-31e9")) || bytes.Contains(out, []byte("key:Pw")) ||
		!bytes.Contains(out, []byte("url: https://REDACTED@registry.example.com:8081\n")) {
		t.Fatalf("output:\n%s\nwant the URL as https://REDACTED@registry.example.com:8081", out)
	}
	if cfg.Codec.SchemaRegistry.URL != "https://key:Pw-31e9@registry.example.com:8081" {
		t.Error("Marshal changed its argument")
	}
	back, err := Parse(out, env(nil))
	if err != nil {
		t.Fatalf("the output does not parse: %v\n%s", err, out)
	}
	if again, _ := Marshal(back); !bytes.Equal(again, out) {
		t.Fatalf("printed, parsed and printed again:\n%s\nwant:\n%s", again, out)
	}
}
