package backoff_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/atrelay/atrelay/internal/backoff"
)

// TestDelay bounds every wait: doubling from Min (mutation: `<< attempt`
// dropped, caught by the attempt 3 row), capped at Max (cap removed: the
// attempt 40 row), half random (no jitter: the spread check).
func TestDelay(t *testing.T) {
	c := backoff.Config{Min: 100 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		attempt int
		lo, hi  time.Duration
	}{
		{0, 50 * time.Millisecond, 100 * time.Millisecond},
		{1, 100 * time.Millisecond, 200 * time.Millisecond},
		{3, 400 * time.Millisecond, 800 * time.Millisecond},
		{4, 500 * time.Millisecond, time.Second},
		{40, 500 * time.Millisecond, time.Second},
		{-1, 50 * time.Millisecond, 100 * time.Millisecond},
	} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := c.Delay(tc.attempt)
			if d < tc.lo || d > tc.hi {
				t.Fatalf("Delay(%d) = %s, want within [%s, %s]", tc.attempt, d, tc.lo, tc.hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("Delay(%d) took %d distinct values in 200 draws: no jitter", tc.attempt, len(seen))
		}
	}
	if d := (backoff.Config{}).Delay(0); d < backoff.DefaultMin/2 || d > backoff.DefaultMin {
		t.Errorf("zero Config: Delay(0) = %s, want the default's", d)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		c    backoff.Config
		want string
	}{
		{backoff.Config{Min: time.Second, Max: time.Second}, ""},
		{backoff.Config{Min: 0, Max: time.Second}, "min: must be positive"},
		{backoff.Config{Min: time.Second, Max: -1}, "max: must be positive"},
		{backoff.Config{Min: 2 * time.Second, Max: time.Second}, "min (2s) must not exceed max (1s)"},
	} {
		err := tc.c.Validate()
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.want {
				t.Errorf("%+v: Validate() = %q, want %q", tc.c, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%+v: Validate() = nil, want %q", tc.c, tc.want)
		}
	}
	var c backoff.Config
	c.Default()
	if c.Min != backoff.DefaultMin || c.Max != backoff.DefaultMax || c.Validate() != nil {
		t.Errorf("Default() = %+v", c)
	}
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !backoff.Sleep(context.Background(), time.Minute) || time.Since(start) != time.Minute {
			t.Fatal("Sleep did not wait its whole duration")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if backoff.Sleep(ctx, time.Hour) {
			t.Fatal("Sleep ran past its context")
		}
	})
}
