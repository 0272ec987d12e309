// Package redact removes credentials embedded in URLs
// (scheme://user:password@host) from text bound for logs, errors, spans and
// command output.
//
// The whole userinfo, user name included, becomes the word REDACTED: for
// Confluent Cloud and most hosted registries the user name is an API key,
// itself half of the credential. The marker is kept, rather than the
// userinfo dropped, so that an operator debugging a 401 still sees that
// credentials were configured, and the result is still a parseable URL.
package redact

import (
	"net/url"
	"strings"
)

// Marker replaces the userinfo of a URL.
const Marker = "REDACTED"

// URL returns s, a single URL, with its userinfo replaced by Marker:
// "http://user:pw@host/x" becomes "http://REDACTED@host/x". A string without
// userinfo is returned unchanged, without allocating.
//
// A string that does not parse as a URL is redacted conservatively:
// everything between "://" (or the start, without a scheme) and its last
// '@' is replaced, so a malformed password (a raw '/' or '#') cannot leak
// through a validation error.
func URL(s string) string {
	if strings.IndexByte(s, '@') < 0 {
		return s
	}
	if u, err := url.Parse(s); err == nil && u.Host != "" && u.Opaque == "" {
		if u.User == nil {
			return s
		}
		u.User = url.User(Marker)
		return u.String()
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndexByte(s[start:], '@')
	if at < 0 {
		return s
	}
	return s[:start] + Marker + s[start+at:]
}

// String returns s with the userinfo of every URL it contains replaced by
// Marker: `Get "http://u:p@h/x": dial tcp` becomes
// `Get "http://REDACTED@h/x": dial tcp`. It is meant for free text such as
// error messages; it returns s itself, without allocating, when s contains
// no '@' or no "://".
//
// A URL is recognised by "://"; its authority runs to the first '/', '?',
// '#', space, control character or character that RFC 3986 forbids in a
// userinfo (such as '"', '<', '\\'), and everything before the authority's
// last '@' is replaced. A raw '@' in a password is therefore covered; a raw
// '/', '?' or '#' is not (such a URL does not parse, and config validation
// rejects it). Text without a scheme ("user:pw@host") is left alone: it
// cannot be told from an e-mail address.
func String(s string) string {
	if !Needed(s) {
		return s
	}
	var b strings.Builder
	last := 0 // s[:last] is in b, or nothing was redacted yet
	for pos := 0; ; {
		i := strings.Index(s[pos:], "://")
		if i < 0 {
			break
		}
		start := pos + i + len("://")
		end := start
		for end < len(s) && !endsAuthority(s[end]) {
			end++
		}
		if at := strings.LastIndexByte(s[start:end], '@'); at >= 0 {
			if last == 0 {
				b.Grow(len(s))
			}
			b.WriteString(s[last:start])
			b.WriteString(Marker)
			last = start + at // keep the '@'
		}
		// Resume right after "://", not at end: a "://" cannot hide inside
		// an authority ('/' ends it), but the ':' before one can.
		pos = start
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// Needed reports whether String might change s: whether s contains both an
// '@' and a "://". It does not allocate.
func Needed(s string) bool {
	return strings.IndexByte(s, '@') >= 0 && strings.Contains(s, "://")
}

// endsAuthority reports whether c cannot belong to a URL's authority
// section as it appears in text.
func endsAuthority(c byte) bool {
	switch c {
	case '/', '?', '#', '"', '<', '>', '\\', '^', '`', '{', '|', '}':
		return true
	}
	return c <= ' ' || c == 0x7f
}

// Error returns err with its message redacted by String; errors.Is and
// errors.As still see err through Unwrap. It returns nil for nil, and err
// itself when its message needs no redaction.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := String(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

// redactedError is an error whose message was redacted.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
