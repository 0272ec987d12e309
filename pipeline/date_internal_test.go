package pipeline

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestFormatDate: formatDate writes what time.Format(dateLayout) wrote, in
// UTC, for edge times and for a seeded sample across years 0..9999 and
// beyond. Mutations caught (each tried once): the milliseconds rounded
// (t.Nanosecond()+5e5)/1e6 ("last nanosecond of a second" fails); the
// range check dropped ("year 10000" writes 0000).
func TestFormatDate(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	tests := []struct {
		name string
		t    time.Time
	}{
		{"epoch", time.Unix(0, 0)},
		{"typical", time.Date(2026, 11, 1, 9, 0, 0, 123e6, time.UTC)},
		{"last nanosecond of a second", time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		{"leap day, other zone", time.Date(2024, 2, 29, 0, 30, 0, 5e6, paris)},
		{"year 0", time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"year 9999", time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)},
		{"year 10000", time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"negative year", time.Date(-1, 6, 1, 0, 0, 0, 0, time.UTC)},
		{"zero time", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, want := formatDate(tt.t), tt.t.UTC().Format(dateLayout); got != want {
				t.Fatalf("formatDate = %s, want %s", got, want)
			}
		})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		at := time.UnixMilli(r.Int64N(400_000_000_000_000) - 100_000_000_000_000).Add(time.Duration(r.IntN(1e6)))
		if got, want := formatDate(at), at.UTC().Format(dateLayout); got != want {
			t.Fatalf("%v: formatDate = %s, want %s", at, got, want)
		}
	}
}
