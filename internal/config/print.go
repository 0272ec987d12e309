package config

import (
	"bytes"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/atrelay/atrelay/internal/redact"
)

// Marshal returns the effective configuration as YAML, as `atrelay check
// --print` shows it: every key, with the defaults applied, and the secrets
// as <redacted>, the userinfo of the registry URL as REDACTED (so the
// output is not a drop-in file where a secret is set). A "$" in a value
// is written "$$", so that the output parses back to the same
// configuration. c is not modified.
func Marshal(c *Config) ([]byte, error) {
	out := *c
	// Credentials written in the registry URL are a secret too.
	out.Codec.SchemaRegistry.URL = redact.URL(c.Codec.SchemaRegistry.URL)
	out.Integrations = slices.Clone(c.Integrations)
	for i := range out.Integrations {
		in := &out.Integrations[i]
		if in.Enabled == nil { // nil means enabled: say so
			on := in.IsEnabled()
			in.Enabled = &on
		}
	}
	var n yaml.Node
	if err := n.Encode(&out); err != nil {
		return nil, err
	}
	escape(&n)
	var b bytes.Buffer
	b.WriteString("# atrelay effective configuration: defaults applied, secrets <redacted>\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// escape writes every "$" in the tree's values as "$$", as Parse reads it.
func escape(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		n.Value = strings.ReplaceAll(n.Value, "$", "$$")
	}
	for _, c := range n.Content {
		escape(c)
	}
}
