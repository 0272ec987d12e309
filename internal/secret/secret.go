// Package secret is a configuration string that never prints: passwords
// read from the configuration keep their value for the code that uses them
// and show <redacted> in logs, errors, `atrelay check` and YAML output.
package secret

// Secret is a string that never prints: fmt, slog, JSON and YAML show
// <redacted>. Use Reveal where the real value is needed.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "<redacted>"
}

// GoString implements fmt.GoStringer, so %#v does not leak it either.
func (s Secret) GoString() string { return `"` + s.String() + `"` }

// MarshalYAML implements yaml.Marshaler.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText implements encoding.TextMarshaler (JSON, slog).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
