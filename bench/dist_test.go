package main

import (
	"math"
	"testing"
)

func TestPercentile(t *testing.T) {
	sorted := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct{ p, want float64 }{{0, 1}, {0.5, 5.5}, {0.9, 9.1}, {0.99, 9.91}, {1, 10}}
	for _, tt := range tests {
		if got := percentile(sorted, tt.p); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if !math.IsNaN(percentile(nil, 0.5)) {
		t.Error("percentile of nothing is not NaN")
	}
}

func TestSummarize(t *testing.T) {
	xs := []float64{5, 1, 3}
	d := summarize(xs)
	if d.N != 3 || d.Min != 1 || d.Max != 5 || d.P50 != 3 || d.Mean != 3 {
		t.Errorf("summarize(%v) = %+v", xs, d)
	}
	if xs[0] != 5 {
		t.Error("summarize sorted its input")
	}
	if z := summarize(nil); z.N != 0 {
		t.Errorf("summarize(nil) = %+v", z)
	}
}
