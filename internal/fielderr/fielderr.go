// Package fielderr is the configuration error that names its key: every
// package's Config.Validate returns these with paths relative to its own
// section, and the section that composes it puts its key in front, so that
// the operator reads "integrations[1].site_id: must be a positive integer"
// whichever package owns the rule.
package fielderr

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a configuration error at one key path.
type Error struct {
	// Path is the key path, dotted, with [i] for list elements; "" is the
	// section itself.
	Path string
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// New returns an *Error at path.
func New(path, format string, args ...any) error {
	return &Error{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Join returns the key path of key under path.
func Join(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	case strings.HasPrefix(key, "["):
		return path + key
	}
	return path + "." + key
}

// Prefix puts path in front of the key path of every *Error in err (a
// joined error is taken apart); other errors are wrapped with path.
func Prefix(path string, err error) error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range Flatten(err) {
		var fe *Error
		if errors.As(e, &fe) {
			out = append(out, &Error{Path: Join(path, fe.Path), Msg: fe.Msg})
		} else {
			out = append(out, fmt.Errorf("%s: %w", path, e))
		}
	}
	return errors.Join(out...)
}

// Flatten returns the errors that errors.Join put together, recursively;
// any other error is returned alone.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}
