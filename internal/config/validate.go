package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/atrelay/atrelay/internal/fielderr"
)

var reflectConfig = reflect.TypeOf(Config{})

// checkKeys walks the YAML tree beside the struct type and reports every key
// the type does not have, with its path and line: a typo must not silently
// fall back to a default.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return checkKeys(n.Content[0], t, path)
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var errs []error
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := map[string]reflect.Type{}
		keysOf(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				errs = append(errs, fieldErr(p, "unknown key (line %d)", k.Line))
				continue
			}
			errs = append(errs, checkKeys(v, ft, p))
		}
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			errs = append(errs, checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)))
		}
	case t.Kind() == reflect.Struct && n.Kind != yaml.MappingNode && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null"):
		errs = append(errs, fieldErr(orRoot(path), "must be a mapping (line %d)", n.Line))
	}
	return errors.Join(errs...)
}

// keysOf adds the YAML keys of struct type t to fields, with their types;
// the keys of ",inline" fields are t's own.
func keysOf(t reflect.Type, fields map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		switch {
		case opts == "inline":
			keysOf(f.Type, fields)
		case tag != "" && tag != "-":
			fields[tag] = f.Type
		}
	}
}

func join(path, key string) string { return fielderr.Join(path, key) }

func fieldErr(path, format string, args ...any) error { return fielderr.New(path, format, args...) }

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}
