package main

import (
	"math"
	"slices"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of samples by the
// nearest-rank method: the smallest sample with at least p% of the samples
// at or below it. It sorts samples in place; zero samples give 0.
func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 || p <= 0 || p > 100 {
		return 0
	}
	slices.Sort(samples)
	// p*n first: for whole p the product is exact, so p99 of 200 is the
	// 198th sample, not the 199th that 0.99*200 in floating point could give.
	rank := int(math.Ceil(p * float64(len(samples)) / 100))
	return samples[max(rank, 1)-1]
}
