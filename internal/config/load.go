package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/atrelay/atrelay/internal/fielderr"
	"github.com/atrelay/atrelay/internal/secret"
)

// Load reads, expands, parses, defaults and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, os.LookupEnv)
}

// Parse decodes the YAML, expands environment references in its values
// with getenv, applies the defaults and validates. It reports every
// problem at once, in the order of the file: unset variables, unknown
// keys, values of the wrong type and broken rules, each a *fielderr.Error
// naming its key path (with "(line N)" where the key is in the file). A
// rule broken only because a value could not be read is not reported:
// the unreadable value is. Only a file that is not YAML at all (a syntax
// error, no document, two documents) stops at its first error.
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
	r := newReport()
	expand(&root, getenv, "", r)

	// yaml decodes what it can and skips the rest; the walk below says
	// what it skipped, and where.
	var cfg Config
	var yamlErrs []string
	if err := root.Decode(&cfg); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, fmt.Errorf("config: %w", err) // excessive aliasing, an anchor containing itself
		}
		yamlErrs = te.Errors
	}
	walked := len(r.items)
	newWalker(r).walk(&root, reflectConfig, "")
	if len(yamlErrs) > 0 && len(r.items) == walked {
		// The walk knows every error yaml reports; should it miss one,
		// yaml's own words (with their line) are better than nothing.
		for _, e := range yamlErrs {
			r.items = append(r.items, item{err: errors.New("config: " + e)})
		}
		r.unread = append(r.unread, "")
	}

	cfg.Default()
	for _, err := range fielderr.Flatten(cfg.Validate()) {
		r.rule(err)
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// expand replaces the environment references in every scalar of the tree,
// as a POSIX shell does:
//
//	${NAME}             the variable's value; unset is an error (a missing
//	                    password must not silently become empty)
//	${NAME:-default}    default when NAME is unset or empty
//	${NAME-default}     default when NAME is unset
//	${NAME:?message}    an error saying message when NAME is unset or empty
//	${NAME?message}     an error saying message when NAME is unset
//	$$                  a literal $
//
// The default and the message are taken literally and end at the first
// "}". Any other "${" is an error; a "$" before anything else is itself.
// Comments are left alone. Problems go to r with the key path and line.
func expand(n *yaml.Node, getenv func(string) (string, bool), path string, r *report) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "$") {
		v, errs := expandString(n.Value, getenv, secretAt(path))
		for _, msg := range errs {
			r.add(n.Line, path, "%s", msg)
		}
		if len(errs) > 0 {
			r.unreadable(path)
		}
		n.Value = v
		if n.Style == 0 {
			n.Tag = "" // a plain scalar is typed again from its new value (site_id: ${SITE})
		}
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			expand(k, getenv, path, r)
			expand(v, getenv, join(path, k.Value), r)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expand(c, getenv, fmt.Sprintf("%s[%d]", path, i), r)
		}
	default:
		for _, c := range n.Content {
			expand(c, getenv, path, r)
		}
	}
}

// secretAt reports whether the key path holds a secret.Secret: a value
// whose text an error must not quote, not even the part after a "${".
func secretAt(path string) bool {
	t := reflectConfig
	for _, key := range strings.Split(path, ".") {
		key, _, _ = strings.Cut(key, "[")
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		fields := map[string]reflect.Type{}
		if t.Kind() == reflect.Struct {
			keysOf(t, fields)
		}
		var ok bool
		if t, ok = fields[key]; !ok {
			return false
		}
	}
	return t == reflect.TypeFor[secret.Secret]()
}

// expandString expands the references in s (see expand) and returns the
// problems found, one message each; those of a secret do not quote its
// text.
func expandString(s string, getenv func(string) (string, bool), isSecret bool) (string, []string) {
	var b strings.Builder
	var errs []string
	for {
		i := strings.IndexByte(s, '$')
		if i < 0 || i+1 == len(s) {
			b.WriteString(s)
			return b.String(), errs
		}
		b.WriteString(s[:i])
		s = s[i:]
		switch s[1] {
		case '$':
			b.WriteByte('$')
			s = s[2:]
			continue
		case '{':
		default:
			b.WriteByte('$')
			s = s[1:]
			continue
		}
		end := strings.IndexByte(s, '}')
		if end < 0 {
			quoted := fmt.Sprintf("%q: ", s)
			if isSecret {
				quoted = ""
			}
			errs = append(errs, quoted+"unterminated ${ (write $$ for a literal $)")
			return b.String(), errs
		}
		ref := s[:end+1]
		s = s[end+1:]
		v, msg := lookup(ref[2:end], getenv)
		if isSecret && strings.HasPrefix(msg, ref+": not a reference") {
			msg = strings.TrimPrefix(msg, ref+": ")
		}
		if msg != "" {
			errs = append(errs, msg)
		}
		b.WriteString(v)
	}
}

// lookup resolves the inside of one ${…}; a non-empty msg is a problem.
func lookup(ref string, getenv func(string) (string, bool)) (value, msg string) {
	n := 0
	for n < len(ref) && (ref[n] == '_' || 'A' <= ref[n] && ref[n] <= 'Z' || 'a' <= ref[n] && ref[n] <= 'z' || n > 0 && '0' <= ref[n] && ref[n] <= '9') {
		n++
	}
	name, op := ref[:n], ref[n:]
	colon := strings.HasPrefix(op, ":")
	if colon {
		op = op[1:]
	}
	if name == "" || (op != "" && op[0] != '-' && op[0] != '?') || (colon && op == "") {
		return "", "${" + ref + "}: not a reference: write ${NAME}, ${NAME:-default} or ${NAME:?message} ($$ for a literal $)"
	}
	v, set := getenv(name)
	switch missing := !set || (colon && v == ""); {
	case op == "" && !set:
		return "", "${" + name + "}: environment variable is not set"
	case op == "" || !missing:
		return v, ""
	case op[0] == '-':
		return op[1:], ""
	case op[1:] != "":
		return "", "${" + name + "}: " + op[1:]
	case colon:
		return "", "${" + name + "}: environment variable is not set or empty"
	}
	return "", "${" + name + "}: environment variable is not set"
}
