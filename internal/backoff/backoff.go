// Package backoff is atrelay's one wait between retries: exponential from
// Min, capped at Max, with half of it random so that members and sites
// that failed together do not retry together. The collect client, the
// decode retry and the dead-letter writer all wait with it.
package backoff

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/atrelay/atrelay/internal/fielderr"
)

// Config bounds the wait; it is the `delivery.backoff` section.
type Config struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// The defaults (SPEC §5).
const (
	DefaultMin = 200 * time.Millisecond
	DefaultMax = 30 * time.Second
)

// Default fills the unset bounds.
func (c *Config) Default() {
	if c.Min == 0 {
		c.Min = DefaultMin
	}
	if c.Max == 0 {
		c.Max = DefaultMax
	}
}

// Validate checks the bounds; paths are relative to the section.
func (c *Config) Validate() error {
	var errs []error
	if c.Min <= 0 {
		errs = append(errs, fielderr.New("min", "must be positive"))
	}
	if c.Max <= 0 {
		errs = append(errs, fielderr.New("max", "must be positive"))
	}
	if c.Min > 0 && c.Max > 0 && c.Min > c.Max {
		errs = append(errs, fielderr.New("", "min (%s) must not exceed max (%s)", c.Min, c.Max))
	}
	return errors.Join(errs...)
}

// Delay is the wait before retry number attempt (0 for the first retry):
// Min doubled attempt times, capped at Max, of which a random half is
// taken off. Unset bounds count as their defaults.
func (c Config) Delay(attempt int) time.Duration {
	c.Default()
	d := c.Min << min(max(attempt, 0), 32)
	if d <= 0 || d > c.Max {
		d = c.Max
	}
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d, or until ctx ends; it reports whether the whole wait ran.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
