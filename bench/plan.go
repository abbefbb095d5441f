package main

import "time"

// schedule is how the finisher completes W jobs: Batches[k] jobs in the
// k-th transaction, one transaction every Interval.
type schedule struct {
	Batches  []int
	Interval time.Duration
}

// planCompletions spreads w completions over about spread: as many
// transactions as fit one per minInterval (but at least one per maxBatch
// jobs, and at most one per job), evenly spaced, with the jobs shared out
// evenly between them. A spread of 0 completes maxBatch jobs every
// minInterval, as fast as that allows.
func planCompletions(w int, spread, minInterval time.Duration, maxBatch int) schedule {
	if w <= 0 {
		return schedule{Interval: minInterval}
	}
	n := (w + maxBatch - 1) / maxBatch
	if spread > 0 && minInterval > 0 {
		n = max(n, min(w, int(spread/minInterval)))
	}
	interval := minInterval
	if spread > 0 && n > 1 {
		interval = max(minInterval, spread/time.Duration(n-1))
	}
	batches := make([]int, n)
	for k := range batches {
		// Jobs k*w/n up to (k+1)*w/n: sizes differ by at most one.
		batches[k] = (k+1)*w/n - k*w/n
	}
	return schedule{Batches: batches, Interval: interval}
}

// duration is the time from the first commit to the last, as planned.
func (s schedule) duration() time.Duration {
	if len(s.Batches) < 2 {
		return 0
	}
	return time.Duration(len(s.Batches)-1) * s.Interval
}

// largest is the largest transaction.
func (s schedule) largest() int {
	m := 0
	for _, n := range s.Batches {
		m = max(m, n)
	}
	return m
}

// batchOf returns, for each job index, the index of the transaction that
// completes it.
func (s schedule) batchOf() []int32 {
	var out []int32
	for k, n := range s.Batches {
		for range n {
			out = append(out, int32(k))
		}
	}
	return out
}

// Rough costs on the 2-core development machine, for the estimate
// printed before a run (the report states the real time next to it).
const (
	setupFixed     = 2 * time.Second       // vacuum, checkpoint, a finisher
	setupPerJob    = 80 * time.Microsecond // enqueue and claim
	startupPerJob  = 20 * time.Microsecond // a Watcher's start-up read
	pollsPerSecond = 10_000                // the polling loop, pool saturated
	privateStart   = 5 * time.Second       // initdb and start
	perSample      = 10 * time.Millisecond // one debounce-0 wait
	perFloorSample = 2 * time.Millisecond  // a round trip or a read
	runTail        = time.Second           // the last waits returning
)

// estimate is about how long a run of c takes.
func estimate(c *config) time.Duration {
	setup := func(n int) time.Duration { return setupFixed + time.Duration(n)*setupPerJob }
	startup := func(s seriesID, n int) time.Duration {
		if s == seriesPolling {
			return time.Duration(n) * time.Second / pollsPerSecond
		}
		return time.Duration(n) * startupPerJob
	}
	var d time.Duration
	if c.dsn == "" {
		d += privateStart
	}
	jw := 0
	for _, s := range c.series {
		if s != seriesPolling {
			jw++
		}
	}
	d += setup(1+c.samples*jw) + time.Duration(2*c.floorSamples)*perFloorSample + time.Duration(c.samples*jw)*perSample
	for _, w := range c.sizes {
		spread := planCompletions(w, c.spread, c.interval, c.batch).duration()
		for _, s := range c.series {
			d += setup(w) + 2*startup(s, w) + spread + runTail
		}
	}
	if c.idle > 0 {
		d += setup(c.idleJobs)
		for _, s := range c.series {
			d += startup(s, c.idleJobs) + c.idle
		}
	}
	return d
}
