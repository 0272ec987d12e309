// Package piano holds Piano Analytics' naming and value rules (SPEC §2), so
// that config validation, the stages and the sandbox collector agree on them.
package piano

import (
	"errors"
	"fmt"
	"strings"
)

// Limits of the Collection API.
const (
	// MaxEventsPerRequest is the most events Piano's SDKs put in one request.
	MaxEventsPerRequest = 50
	// MaxKeyLen is the longest property key.
	MaxKeyLen = 40
	// MaxStringLen is the longest string value, in characters.
	MaxStringLen = 255
	// MaxDecimal bounds decimal values: Piano accepts ±1e15.
	MaxDecimal = 1e15
)

// Naming errors, checked with errors.Is.
var (
	ErrEmptyName    = errors.New("is empty")
	ErrBadEventName = errors.New("must start with a lowercase letter and hold only lowercase letters, digits, '_' and '.'")
	ErrBadKey       = errors.New("must match ^[a-z][a-z0-9_]*$")
	ErrKeyTooLong   = fmt.Errorf("must be at most %d characters", MaxKeyLen)
	ErrReservedKey  = errors.New("must not start with m_ or visit_ (reserved by Piano)")
)

// CheckEventName reports whether name is a valid Piano event name.
func CheckEventName(name string) error {
	if name == "" {
		return ErrEmptyName
	}
	if !isLower(name[0]) {
		return ErrBadEventName
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isLower(c) && !isDigit(c) && c != '_' && c != '.' {
			return ErrBadEventName
		}
	}
	return nil
}

// CheckKey reports whether key is a valid Piano property key.
func CheckKey(key string) error {
	if key == "" {
		return ErrEmptyName
	}
	if len(key) > MaxKeyLen {
		return ErrKeyTooLong
	}
	if !isLower(key[0]) {
		return ErrBadKey
	}
	for i := 1; i < len(key); i++ {
		c := key[i]
		if !isLower(c) && !isDigit(c) && c != '_' {
			return ErrBadKey
		}
	}
	if strings.HasPrefix(key, "m_") || strings.HasPrefix(key, "visit_") {
		return ErrReservedKey
	}
	return nil
}

// IsDateKey reports whether Piano reads the property key as a date: keys
// ending in _date, _utc, _ts or _timestamp, whose values must be epoch
// seconds or RFC 3339.
func IsDateKey(key string) bool {
	return strings.HasSuffix(key, "_date") || strings.HasSuffix(key, "_utc") ||
		strings.HasSuffix(key, "_ts") || strings.HasSuffix(key, "_timestamp")
}

// DefaultEventName is the Piano name of a Purchasely event with no override:
// SUBSCRIPTION_STARTED becomes subscription_started.
func DefaultEventName(purchasely string) string { return strings.ToLower(purchasely) }

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
