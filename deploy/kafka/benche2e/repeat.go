package main

import (
	"fmt"
	"slices"
	"time"
)

// binary is one atrelay binary to measure and its row label.
type binary struct{ bin, label string }

// binaries are -atrelay and, when set, -baseline.
func binaries(o options) []binary {
	bs := []binary{{o.atrelay, ""}}
	if o.baseline != "" {
		bs = append(bs, binary{o.baseline, "baseline"})
	}
	return bs
}

// schedule is the order of one workload's runs: -repeat rounds of each
// binary, the baseline first in odd rounds and second in even ones, so that
// neither always runs on the warmer (or busier) machine.
func schedule(o options) []binary {
	bs := binaries(o)
	var out []binary
	for i := range o.repeat {
		round := slices.Clone(bs)
		if len(round) == 2 && i%2 == 0 {
			round[0], round[1] = round[1], round[0]
		}
		out = append(out, round...)
	}
	return out
}

// display is the workload's name in the table: "(baseline)" marks the
// baseline binary's runs.
func (w workload) display() string { return withLabel(w.name, w.label) }

func (r result) display() string { return withLabel(r.workload, r.label) }

func withLabel(name, label string) string {
	if label == "" {
		return name
	}
	return name + " (" + label + ")"
}

// medianRow summarises runs of one workload and binary: the median of each
// figure with its range, the highest peak RSS, "yes" only when every run
// committed to the end. Medians, because the machine's noise is one-sided
// (another process, a slower CPU share), not symmetric.
func medianRow(rs []result, linger time.Duration) string {
	if len(rs) == 0 {
		return ""
	}
	perSec := make([]float64, len(rs))
	cpu := make([]float64, len(rs))
	var rss int64
	committed := "yes"
	var p50, p99 []float64
	var delivered int64
	for i, r := range rs {
		perSec[i] = float64(r.events) / r.wall.Seconds() / 1000
		cpu[i] = float64(r.cpu.Microseconds()) / float64(r.events)
		rss = max(rss, r.peakRSS)
		if r.committed != "yes" {
			committed = fmt.Sprintf("no (%d of %d runs: %s)", countNot(rs), len(rs), r.committed)
		}
		if r.latency != nil {
			p50 = append(p50, r.latency.P50ms)
			p99 = append(p99, r.latency.P99ms)
		}
		delivered += r.delivered
	}
	lat := "—"
	if len(p99) > 0 {
		met := 0
		for _, v := range p99 {
			if v <= float64((linger+50*time.Millisecond)/time.Millisecond) {
				met++
			}
		}
		lat = fmt.Sprintf("%s / %s (p99 ≤ linger+50ms in %d of %d runs)", spread(p50), spread(p99), met, len(p99))
	}
	name := fmt.Sprintf("**%s: median of %d**", rs[0].display(), len(rs))
	return fmt.Sprintf("| %s | %d | %sk | %s | %.0f (max) | %s | %s | %d in all |", name, rs[0].events, spread(perSec), spread(cpu),
		float64(rss)/(1<<20), committed, lat, delivered)
}

// spread is "median (min–max)" of vs, one decimal.
func spread(vs []float64) string {
	s := slices.Clone(vs)
	slices.Sort(s)
	return fmt.Sprintf("%.1f (%.1f–%.1f)", median(s), s[0], s[len(s)-1])
}

// median of sorted values: the middle one, or the mean of the two middle
// ones.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func countNot(rs []result) int {
	n := 0
	for _, r := range rs {
		if r.committed != "yes" {
			n++
		}
	}
	return n
}
