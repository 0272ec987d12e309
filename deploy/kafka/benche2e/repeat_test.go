package main

import (
	"strings"
	"testing"
	"time"
)

// TestSchedule: the baseline and atrelay alternate which runs first.
// Mutation caught: no swap in even rounds (the baseline always second).
func TestSchedule(t *testing.T) {
	labels := func(bs []binary) string {
		var s []string
		for _, b := range bs {
			s = append(s, b.bin)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		name string
		o    options
		want string
	}{
		{"one binary", options{atrelay: "new", repeat: 3}, "new,new,new"},
		{"with a baseline", options{atrelay: "new", baseline: "old", repeat: 3}, "old,new,new,old,old,new"},
		{"once", options{atrelay: "new", baseline: "old", repeat: 1}, "old,new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := labels(schedule(tc.o)); got != tc.want {
				t.Errorf("schedule = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestMedianRow: medians of odd and even counts, the highest RSS, a failed
// commit check in any run shows. Mutations caught: median of an even
// count taking the upper middle (18.0 for the replay rows), the RSS of the
// last run instead of the highest, a run's failed commit check replaced by
// the next run's.
func TestMedianRow(t *testing.T) {
	run := func(cpuUS int64, rss int64, committed string) result {
		return result{workload: "replay", events: 1000, wall: time.Second, cpu: time.Duration(cpuUS*1000) * time.Microsecond,
			peakRSS: rss << 20, committed: committed, delivered: 1000}
	}
	steady := func(p99 float64) result {
		r := run(70, 40, "yes")
		r.workload, r.label = "steady", "baseline"
		r.latency = &stats{P50ms: 20, P99ms: p99}
		return r
	}
	for _, tc := range []struct {
		name string
		rs   []result
		want []string
	}{
		{"odd", []result{run(19, 128, "yes"), run(17, 130, "yes"), run(18, 127, "yes")},
			[]string{"replay: median of 3", "| 18.0 (17.0–19.0) |", "| 130 (max) |", "| yes |", "3000 in all"}},
		{"even", []result{run(20, 128, "yes"), run(16, 129, "no: 3 of 4 partitions"), run(17, 127, "yes"), run(19, 126, "yes")},
			[]string{"median of 4", "| 18.0 (16.0–20.0) |", "| 129 (max) |", "no (1 of 4 runs: no: 3 of 4 partitions)"}},
		{"steady, baseline", []result{steady(63), steady(81.5), steady(38)},
			[]string{"steady (baseline): median of 3", "20.0 (20.0–20.0) / 63.0 (38.0–81.5) (p99 ≤ linger+50ms in 2 of 3 runs)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := medianRow(tc.rs, 20*time.Millisecond)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("medianRow = %s\nwant %q in it", got, w)
				}
			}
		})
	}
}
