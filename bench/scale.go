package main

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// startupTimeout bounds the start-up of one run's waits (every id read
// once), so that a broken backend fails the run instead of hanging it.
const startupTimeout = 5 * time.Minute

// scale runs series s on w jobs that a separate process completes on the
// planned schedule, counting the watcher role's statements from New to the
// last resolution.
func (b *bench) scale(ctx context.Context, w int, s seriesID) (scaleRow, error) {
	row := scaleRow{W: w, Series: s, Label: s.label()}
	sched := planCompletions(w, b.cfg.spread, b.cfg.interval, b.cfg.batch)
	row.Transactions, row.LargestBatch, row.IntervalMS = len(sched.Batches), sched.largest(), ms(sched.Interval)
	b.logf("%s, W=%d: setting up %d jobs (enqueued and claimed by the worker role)", s.label(), w, w)
	ids, err := b.prepare(ctx, w)
	if err != nil {
		return row, err
	}
	fin, err := startFinisher(ctx, finisherSpec{DSN: b.t.workerDSN, Schema: b.t.schema, IDs: ids, Batches: sched.Batches, Interval: sched.Interval})
	if err != nil {
		return row, err
	}
	defer fin.close()
	db, err := openMeasured(ctx, b.cfg.driver, b.t.watcherDSN, b.t.schema, b.cfg.pool)
	if err != nil {
		return row, err
	}
	defer db.Close()
	rec := newRecorder(ids)
	batchOf := sched.batchOf()

	memBefore := liveBytes()
	m, err := b.startMeasured(ctx, s, db, ids, rec)
	if err != nil {
		return row, err
	}
	defer m.stop()
	row.StartupS, row.StartupCost = m.startup.Seconds(), m.startupCost()
	row.MemoryPerWaiterB = perWaiter(memBefore, liveBytes(), w)
	b.logf("%s, W=%d: start-up took %.2fs (%s); %.0f B per pending waiter; completing over %s (%d transactions of up to %d jobs, one every %s)",
		s.label(), w, row.StartupS, row.StartupCost.describe(), row.MemoryPerWaiterB, sched.duration().Round(time.Millisecond),
		len(sched.Batches), sched.largest(), sched.Interval.Round(10*time.Microsecond))

	if err := fin.start(); err != nil {
		return row, err
	}
	commitAt, err := fin.wait(ctx)
	if err != nil {
		return row, fmt.Errorf("finisher: %w", err)
	}
	drainEnd := time.Now().Add(b.cfg.drain)
	select {
	case <-m.ws.done():
	case <-time.After(time.Until(drainEnd)):
	case <-ctx.Done():
		return row, ctx.Err()
	}
	end, err := b.counter.take(ctx)
	if err != nil {
		return row, err
	}
	row.Cost, row.Evicted = end.since(m.zero)
	row.Watcher = m.stop()
	b.fillScale(&row, rec, batchOf, commitAt, drainEnd.UnixNano())
	b.logf("%s, W=%d: p50 %s ms, p99 %s ms, %d unresolved; %s; %.4f ms DB time per resolved job",
		s.label(), w, fmtMS(row.Latency.P50), fmtMS(row.Latency.P99), row.Unresolved, row.Cost.describe(), row.PerJob.DBMS)
	return row, nil
}

// fillScale computes a scale row's latency, throughput and per-job cost
// from the recorded times: rec.at (returns) and commitAt (by batch).
func (b *bench) fillScale(row *scaleRow, rec *recorder, batchOf []int32, commitAt []int64, censor int64) {
	lat := make([]float64, 0, len(rec.at))
	var lastReturn int64
	for i, at := range rec.at {
		c := commitAt[batchOf[i]]
		switch {
		case at == 0:
			row.Unresolved++
			lat = append(lat, ms(time.Duration(censor-c)))
		default:
			row.Resolved++
			lastReturn = max(lastReturn, at)
			lat = append(lat, ms(nonNegative(time.Duration(at-c))))
		}
	}
	row.Errors = int(rec.errors.Load())
	row.Latency = summarize(lat)
	first, last := slices.Min(commitAt), slices.Max(commitAt)
	row.CompletionS = time.Duration(last - first).Seconds()
	row.OfferedPerS = perSecond(row.W, time.Duration(last-first))
	row.ResolvedPerS = perSecond(row.Resolved, time.Duration(lastReturn-first))
	row.PerJob = divide(row.Cost, max(row.Resolved, 1))
}

// perWaiter is the growth of live memory per pending waiter.
func perWaiter(before, after uint64, n int) float64 {
	if after < before || n == 0 {
		return 0
	}
	return float64(after-before) / float64(n)
}

func perSecond(n int, d time.Duration) float64 {
	if n == 0 || d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}
