package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FieldError is a configuration error at one key path, printed as
// "integrations[1].site_id: must be a positive integer".
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

func fieldErr(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

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
	cfg.SetDefaults()
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

// SetDefaults fills every unset value with its SPEC §5 default.
func (c *Config) SetDefaults() {
	k := &c.Kafka
	if k.StartFrom == "" {
		k.StartFrom = "earliest"
	}
	if k.DLQTopic == "" && k.Topic != "" {
		k.DLQTopic = k.Topic + ".dlq"
	}
	if c.Codec.Framing == "" {
		c.Codec.Framing = "auto"
	}
	if c.Codec.RawSchema == "" {
		c.Codec.RawSchema = "schemas/subscription_event.avsc"
	}
	d := &c.Delivery
	setInt(&d.MaxEvents, 500)
	setInt(&d.MaxBytes, 1<<20)
	setDur(&d.Linger, 200*time.Millisecond)
	setInt(&d.Concurrency, 16)
	setDur(&d.RequestTimeout, 10*time.Second)
	setDur(&d.Backoff.Min, 200*time.Millisecond)
	setDur(&d.Backoff.Max, 30*time.Second)
	setInt(&d.MaxBufferedEvents, 50000)
	setDur(&d.CommitInterval, time.Second)
	setDur(&d.ShutdownTimeout, 30*time.Second)
	for i := range c.Integrations {
		in := &c.Integrations[i]
		if len(in.Environments) == 0 {
			in.Environments = []string{"PRODUCTION"}
		}
		if len(in.IDClientFrom) == 0 {
			in.IDClientFrom = []string{"attribute:at_internet_id_client"}
		}
		in.CollectPath = strings.TrimPrefix(in.CollectPath, "/")
		if in.CollectPath == "" {
			in.CollectPath = "event" // Piano's default collection path
		}
	}
	t := &c.Telemetry
	if t.ServiceName == "" {
		t.ServiceName = "atrelay"
	}
	if t.MetricsListen == "" {
		t.MetricsListen = "127.0.0.1:9464"
	}
	if t.HealthListen == "" {
		t.HealthListen = "127.0.0.1:8080"
	}
}

func setInt(p *int, v int) {
	if *p == 0 {
		*p = v
	}
}

func setDur(p *time.Duration, v time.Duration) {
	if *p == 0 {
		*p = v
	}
}
