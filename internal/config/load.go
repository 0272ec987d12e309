package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Load reads, expands, parses, defaults and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, os.LookupEnv)
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expand replaces ${NAME} in every scalar value of the tree with the
// variable's value, and $$ with a literal $. Comments are left alone. An
// unset variable is an error: a silently empty password would be worse.
func expand(n *yaml.Node, getenv func(string) (string, bool)) error {
	var errs []error
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "$") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			if m == "$$" {
				return "$"
			}
			name := m[2 : len(m)-1]
			v, ok := getenv(name)
			if !ok {
				errs = append(errs, fmt.Errorf("line %d: ${%s}: environment variable is not set", n.Line, name))
			}
			return v
		})
		if n.Style == 0 {
			n.Tag = "" // a plain scalar is typed again from its new value (site_id: ${SITE})
		}
	}
	for _, c := range n.Content {
		errs = append(errs, expand(c, getenv))
	}
	return errors.Join(errs...)
}

// Parse decodes the YAML, expands ${VAR} references in values with getenv,
// (unknown keys are errors), applies the defaults and validates.
func Parse(data []byte, getenv func(string) (string, bool)) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config: the file is empty")
		}
		return nil, fmt.Errorf("config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("config: more than one YAML document")
	}
	if err := expand(&root, getenv); err != nil {
		return nil, err
	}
	if err := checkKeys(&root, reflectConfig, ""); err != nil {
		return nil, err
	}
	var cfg Config
	if err := root.Decode(&cfg); err != nil {
		return nil, typeError(err)
	}
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// typeError rewrites yaml's "cannot unmarshal !!str `abc` into int64" into
// a shorter message; yaml's own errors already carry the line.
func typeError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return fmt.Errorf("config: %s", strings.Join(te.Errors, "; "))
	}
	return fmt.Errorf("config: %w", err)
}
