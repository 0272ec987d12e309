package config

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/atrelay/atrelay/internal/fielderr"
)

var (
	reflectConfig   = reflect.TypeFor[Config]()
	reflectDuration = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
)

// report collects a file's problems, each with its line where known, and
// the key paths whose value could not be read: a rule broken under one of
// them is a consequence of that, not news.
type report struct {
	items  []item
	unread []string
	// lines is the line of every key path in the file, for the rules'
	// errors, which know the path only.
	lines map[string]int
}

type item struct {
	line int // 0: not in the file
	err  error
}

func newReport() *report { return &report{lines: map[string]int{}} }

// add reports a problem at path, found on line.
func (r *report) add(line int, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		msg += fmt.Sprintf(" (line %d)", line)
	}
	r.items = append(r.items, item{line, &fielderr.Error{Path: orRoot(path), Msg: msg}})
}

// unreadable marks the value at path as not read.
func (r *report) unreadable(path string) { r.unread = append(r.unread, path) }

// rule adds an error from Validate, with the line of its key, unless it
// may be a consequence of a value that could not be read: the value's own
// rules, those of the keys under it, and those of the keys above it (a
// rule across keys, such as "username and password are required", is
// reported at the key that holds them).
func (r *report) rule(err error) {
	var fe *fielderr.Error
	if !errors.As(err, &fe) {
		r.items = append(r.items, item{err: err})
		return
	}
	for _, u := range r.unread {
		if under(fe.Path, u) || under(u, fe.Path) {
			return
		}
	}
	line, ok := r.lines[fe.Path]
	if !ok {
		r.items = append(r.items, item{err: err})
		return
	}
	r.add(line, fe.Path, "%s", fe.Msg)
}

// err joins the problems in the order of the file; those not in the file
// (a required key that is missing) come last, in the order found.
func (r *report) err() error {
	slices.SortStableFunc(r.items, func(a, b item) int {
		return cmp.Compare(lineOrLast(a.line), lineOrLast(b.line))
	})
	errs := make([]error, len(r.items))
	for i, it := range r.items {
		errs[i] = it.err
	}
	return errors.Join(errs...)
}

// under reports whether path is base or a key path below it.
func under(path, base string) bool {
	if base == "" || path == base {
		return true
	}
	return strings.HasPrefix(path, base) && strings.ContainsRune(".[", rune(path[len(base)]))
}

func lineOrLast(l int) int {
	if l == 0 {
		return int(^uint(0) >> 1)
	}
	return l
}

// walker walks the YAML tree beside the struct type, as yaml decodes it,
// and reports every key the type does not have and every value yaml cannot
// decode into its field, with the key path and line: a typo must not
// silently fall back to a default, and a type error must say where it is.
type walker struct {
	r *report
	// following holds the anchors being walked through aliases; yaml
	// itself refuses an anchor that contains itself.
	following map[*yaml.Node]bool
	// budget bounds the nodes visited, since aliases can multiply a tree.
	budget int
}

func newWalker(r *report) *walker {
	return &walker{r: r, following: map[*yaml.Node]bool{}, budget: 1 << 20}
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if w.budget--; w.budget < 0 {
		return
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) > 0 {
			w.walk(n.Content[0], t, path)
		}
		return
	case yaml.AliasNode:
		if a := n.Alias; a != nil && !w.following[a] {
			w.following[a] = true
			w.walk(a, t, path)
			delete(w.following, a)
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // the zero value, so the default
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		w.leaf(n, t, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		fields := map[string]reflect.Type{}
		keysOf(t, fields)
		w.mapping(n, path, func(k string) (reflect.Type, bool) { ft, ok := fields[k]; return ft, ok })
	case reflect.Map:
		w.mapping(n, path, func(string) (reflect.Type, bool) { return t.Elem(), true })
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.r.unreadable(path)
			w.r.add(n.Line, path, "must be a list, not %s", describe(n))
			return
		}
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			w.r.lines[p] = c.Line
			w.walk(c, t.Elem(), p)
			if slices.Contains(w.r.unread, p) {
				// yaml leaves an element it cannot decode out of the
				// list, so the rules' indexes after it are not the file's.
				w.r.unreadable(path)
			}
		}
	case reflect.Interface:
		// Any value: the section's Validate says which it accepts.
	default:
		w.leaf(n, t, path)
	}
}

// mapping walks a mapping whose keys have the types field returns.
func (w *walker) mapping(n *yaml.Node, path string, field func(key string) (reflect.Type, bool)) {
	if n.Kind != yaml.MappingNode {
		w.r.unreadable(path)
		w.r.add(n.Line, path, "must be a mapping, not %s", describe(n))
		return
	}
	first := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.r.add(k.Line, path, "a key must be a string, not %s", describe(k))
			continue
		}
		p := join(path, k.Value)
		if line, dup := first[k.Value]; dup {
			w.r.unreadable(path) // yaml decodes nothing of a mapping with a duplicate key
			w.r.add(k.Line, p, "duplicate key (first on line %d)", line)
			continue
		}
		first[k.Value] = k.Line
		ft, ok := field(k.Value)
		if !ok {
			w.r.add(k.Line, p, "unknown key")
			continue
		}
		w.r.lines[p] = k.Line
		w.walk(v, ft, p)
	}
}

// leaf checks that yaml decodes n into a value of type t.
func (w *walker) leaf(n *yaml.Node, t reflect.Type, path string) {
	v := reflect.New(t)
	err := n.Decode(v.Interface())
	if err == nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && isInt(t.Kind()) {
		err = errors.New("truncated") // yaml turns 1.5 into 1
	}
	if err == nil {
		return
	}
	w.r.unreadable(path)
	w.r.add(n.Line, path, "%s", typeMessage(n, t, err))
}

// typeMessage says what a value of type t must look like.
func typeMessage(n *yaml.Node, t reflect.Type, err error) string {
	got := describe(n)
	switch k := t.Kind(); {
	case t == reflectDuration:
		return "must be a duration with a unit (200ms, 30s, 1m30s), not " + got
	case isInt(k) && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int":
		return fmt.Sprintf("%s is out of range", got)
	case isInt(k):
		return "must be an integer, not " + got
	case k == reflect.Float32 || k == reflect.Float64:
		return "must be a number, not " + got
	case k == reflect.Bool:
		return "must be true or false, not " + got
	case k == reflect.String:
		return "must be a string, not " + got
	}
	// yaml's own words, less its "line N: " (the message adds the line).
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if _, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(msg, "line ") {
			msg = rest
		}
		return msg
	}
	return err.Error()
}

// describe names what n is, for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "an alias"
}

func isInt(k reflect.Kind) bool {
	return reflect.Int <= k && k <= reflect.Uint64 // Int…Int64, Uint…Uint64 (not Uintptr)
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

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}
