package main

import (
	"testing"
	"time"
)

// TestPercentile checks the nearest-rank percentile. Mutation caught:
// rounding the rank down (math.Floor) gives 9 ms for p95 of 1..10 ms.
func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one sample", ms(7), 99, 7 * time.Millisecond},
		{"p50 of 1..10", ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 50, 5 * time.Millisecond},
		{"p95 of 1..10 rounds the rank up", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 95, 10 * time.Millisecond},
		{"p1 of 1..10 is the least", ms(3, 1, 2, 4, 5, 6, 7, 8, 9, 10), 1, 1 * time.Millisecond},
		{"p100 is the max", ms(3, 100, 2), 100, 100 * time.Millisecond},
		{"p99 of 200 is the 198th", append(ms(make([]int, 197)...), ms(50, 60, 70)...), 99, 50 * time.Millisecond},
		{"p99 of 201 is the 199th", append(ms(make([]int, 197)...), ms(50, 60, 70, 80)...), 99, 60 * time.Millisecond},
		{"p out of range", ms(1, 2), 0, 0},
		{"p above 100", ms(1, 2), 101, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.samples, tc.p); got != tc.want {
				t.Errorf("percentile(p%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}
