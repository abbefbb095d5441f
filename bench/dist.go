package main

import (
	"math"
	"slices"
	"time"
)

// dist summarizes a sample of durations, in milliseconds.
type dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	Mean float64 `json:"mean_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// summarize returns the distribution of xs (milliseconds). xs is not
// modified. An empty sample gives a zero dist with N 0.
func summarize(xs []float64) dist {
	if len(xs) == 0 {
		return dist{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	return dist{
		N:    len(s),
		Min:  s[0],
		Mean: sum / float64(len(s)),
		P50:  percentile(s, 0.50),
		P90:  percentile(s, 0.90),
		P99:  percentile(s, 0.99),
		Max:  s[len(s)-1],
	}
}

// percentile returns the p-quantile (0 <= p <= 1) of sorted, interpolating
// linearly between the two closest ranks (the "type 7" estimator of R and
// NumPy's default). It returns NaN for an empty sample.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return math.NaN()
	case p <= 0:
		return sorted[0]
	case p >= 1:
		return sorted[n-1]
	}
	rank := p * float64(n-1)
	lo := int(math.Floor(rank))
	hi := min(lo+1, n-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(rank-float64(lo))
}

// ms converts a duration to (fractional) milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// nonNegative clamps a latency at zero: a Wait may return a hair before the
// committing call does, since the server sends the notification and the
// commit's reply at the same time.
func nonNegative(d time.Duration) time.Duration { return max(d, 0) }
