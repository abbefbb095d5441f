package main

import (
	"testing"
	"time"
)

func TestPlanCompletions(t *testing.T) {
	tests := []struct {
		name              string
		w                 int
		spread, interval  time.Duration
		batch             int
		wantTx            int
		wantLargest       int
		wantInterval      time.Duration
		wantDurationAbout time.Duration
	}{
		{"1k over 30s: one job every 30ms", 1000, 30 * time.Second, 10 * time.Millisecond, 100, 1000, 1, 30030030, 30 * time.Second},
		{"100k over 30s: 34 jobs every 10ms", 100_000, 30 * time.Second, 10 * time.Millisecond, 100, 3000, 34, 10003334, 30 * time.Second},
		{"no spread: the batch every interval", 1000, 0, 10 * time.Millisecond, 100, 10, 100, 10 * time.Millisecond, 90 * time.Millisecond},
		{"batch caps a short spread", 100_000, time.Second, 10 * time.Millisecond, 100, 1000, 100, 10 * time.Millisecond, 9990 * time.Millisecond},
		{"one job", 1, 30 * time.Second, 10 * time.Millisecond, 100, 1, 1, 10 * time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := planCompletions(tt.w, tt.spread, tt.interval, tt.batch)
			sum := 0
			for _, n := range s.Batches {
				if n < 1 {
					t.Fatalf("empty transaction in %v", s.Batches)
				}
				sum += n
			}
			if sum != tt.w {
				t.Errorf("batches complete %d jobs, want %d", sum, tt.w)
			}
			if len(s.Batches) != tt.wantTx || s.largest() != tt.wantLargest || s.Interval != tt.wantInterval {
				t.Errorf("%d transactions of up to %d every %s, want %d of up to %d every %s",
					len(s.Batches), s.largest(), s.Interval, tt.wantTx, tt.wantLargest, tt.wantInterval)
			}
			if d := s.duration() - tt.wantDurationAbout; d > time.Millisecond || d < -time.Millisecond {
				t.Errorf("lasts %s, want about %s", s.duration(), tt.wantDurationAbout)
			}
			if got := len(s.batchOf()); got != tt.w {
				t.Errorf("batchOf has %d entries, want %d", got, tt.w)
			}
		})
	}
}

func TestEstimateGrowsWithTheRun(t *testing.T) {
	quick, err := parseConfig([]string{"--quick"}, nilWriter{})
	if err != nil {
		t.Fatal(err)
	}
	full, err := parseConfig(nil, nilWriter{})
	if err != nil {
		t.Fatal(err)
	}
	q, f := estimate(quick), estimate(full)
	if q <= 0 || q > time.Minute {
		t.Errorf("quick estimate %s, want under a minute", q)
	}
	// The full run's spreads and idle phases alone: 9 x 30 s + 3 x 60 s.
	if f < 450*time.Second || f > 30*time.Minute {
		t.Errorf("full estimate %s, want between 7.5 and 30 minutes", f)
	}
}

type nilWriter struct{}

func (nilWriter) Write(p []byte) (int, error) { return len(p), nil }
