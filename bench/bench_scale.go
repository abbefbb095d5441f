package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// scale runs the three series at n pending waiters.
func (b *bench) scale(ctx context.Context, n int) ([]scaleRow, []memoryRow, error) {
	var rows []scaleRow
	var mems []memoryRow
	for _, feed := range []bool{true, false} {
		row, mem, ids, err := b.scaleJobwatch(ctx, n, feed)
		if err != nil {
			return nil, nil, fmt.Errorf("scale %d, %s: %w", n, seriesName(feed), err)
		}
		rows, mems = append(rows, row), append(mems, mem)
		if len(ids) >= b.cfg.finished && b.finishedIDs == nil {
			b.finishedIDs = ids[:b.cfg.finished] // finished now: reused by waitAllFinished
		}
	}
	row, mem, err := b.scaleBaseline(ctx, n)
	if err != nil {
		return nil, nil, fmt.Errorf("scale %d, %s: %w", n, seriesBaseline, err)
	}
	return append(rows, row), append(mems, mem), nil
}

func (b *bench) logScale(r scaleRow) {
	capped := ""
	if r.Capped {
		capped = fmt.Sprintf(" (capped at %s)", b.cfg.baselineTimeout)
	}
	setup := ""
	if r.Series != seriesBaseline {
		setup = fmt.Sprintf(" (before: %d reads of %d ids while registering and settling)", r.SetupReads, r.SetupIDsRead)
	}
	b.logf("scale %d: %s: %d resolved in %.2fs%s, %d reads, %s ms database, %s us/job%s",
		r.Waiters, r.Series, r.Resolved, r.Seconds, capped, r.Reads, fmtMS(r.DBMS), fmtNum(r.DBUSPerJob), setup)
}

// scaleJobwatch registers n waits with one WaitEach, then completes the
// jobs in batches and measures until every wait has returned.
func (b *bench) scaleJobwatch(ctx context.Context, n int, feed bool) (scaleRow, memoryRow, []jobwatch.JobID, error) {
	series := seriesName(feed)
	b.logf("scale %d: %s: setting up %d picked jobs", n, series, n)
	ids, err := b.prepare(ctx, n)
	if err != nil {
		return scaleRow{}, memoryRow{}, nil, err
	}
	index := make(map[jobwatch.JobID]int, n)
	for i, id := range ids {
		index[id] = i
	}
	seen := make([]time.Time, n)
	commitAt := make([]time.Time, b.batches(n))
	if err := b.warmPool(ctx, ids); err != nil {
		return scaleRow{}, memoryRow{}, nil, err
	}

	w, clock, err := b.newWatcher(ctx, jobwatch.WithChangeFeed(feed))
	if err != nil {
		return scaleRow{}, memoryRow{}, nil, err
	}
	defer w.Close()

	memBefore := liveMemory()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var resolved atomic.Int64
	done := make(chan error, 1)
	go func() {
		for st, err := range w.WaitEach(wctx, ids) {
			if err != nil {
				done <- err
				return
			}
			if st.State != statemachine.Successful {
				done <- fmt.Errorf("job %d settled %s, want successful", st.ID, st.State)
				return
			}
			seen[index[st.ID]] = time.Now()
			resolved.Add(1)
		}
		done <- nil
	}()
	b.logf("scale %d: %s: registering %d waits", n, series, n)
	err = waitUntil(ctx, setupTimeout, "the waits' first read", func() bool {
		s := w.Stats()
		return s.Pending == n && s.IDsRead >= uint64(n)
	})
	if err == nil {
		err = b.settle(ctx, w, clock)
	}
	if err != nil {
		return scaleRow{}, memoryRow{}, nil, err
	}
	mem := memoryPerWaiter(series, n, memBefore, liveMemory(), false)

	s0 := w.Stats()
	calls0, db0 := clock.snapshot()
	partial0 := clock.partial.Load()
	b.logf("scale %d: %s: completing %d jobs, %d per transaction", n, series, n, b.cfg.batch)
	start := time.Now()
	if err := b.completeAll(ctx, ids, commitAt); err != nil {
		return scaleRow{}, memoryRow{}, nil, err
	}
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		return scaleRow{}, memoryRow{}, nil, err
	}
	end := latest(seen)
	s1 := w.Stats()
	calls1, db1 := clock.snapshot()

	row := scaleRow{
		Series:        series,
		Waiters:       n,
		Resolved:      int(resolved.Load()),
		Seconds:       end.Sub(start).Seconds(),
		Reads:         s1.Reads.Total() - s0.Reads.Total(),
		IDsRead:       s1.IDsRead - s0.IDsRead,
		ChangesRead:   s1.ChangesRead - s0.ChangesRead,
		Notifications: s1.Notifications - s0.Notifications,
		DBCalls:       calls1 - calls0,
		DBMS:          ms(db1 - db0),
		Errors:        s1.ReadErrors - s0.ReadErrors,
		Latency:       summarize(b.latencies(seen, commitAt)),
		PartialFeeds:  clock.partial.Load() - partial0,
		SetupReads:    s0.Reads.Total(),
		SetupIDsRead:  s0.IDsRead,
	}
	row.ResolvedPerSec = perSecond(row.Resolved, end.Sub(start))
	row.DBUSPerJob = perJobUS(db1-db0, row.Resolved)
	b.logScale(row)
	return row, mem, ids, nil
}

// settleRounds caps the notifications settle sends.
const settleRounds = 4

// settle brings a watcher whose waits are registered to its steady state
// before a timed phase: it sends a table_changed_event and waits for the
// reads that follow to end, again while the change feed (if the watcher
// uses it) came back Partial in that round. Without a feed, one round: one
// more read of every pending job. With one, the first notification starts
// the feed's cursor and the next one is still partial (a fresh cursor
// cannot vouch for transactions that were running when it started), each
// making the watcher re-read every pending job; the third reads only the
// changes. A cost of starting to wait, which a long-running watcher pays
// once, not of jobs completing.
func (b *bench) settle(ctx context.Context, w *jobwatch.Watcher, clock *dbClock) error {
	for range settleRounds {
		partial0 := clock.partial.Load()
		if err := b.notifyAndQuiet(ctx, w); err != nil {
			return err
		}
		if clock.partial.Load() == partial0 {
			return nil
		}
	}
	b.logf("note: the change feed was still partial after %d notifications (a long transaction running?)", settleRounds)
	return nil
}

// notifyAndQuiet sends one table_changed_event and waits until the reads
// it causes have ended.
func (b *bench) notifyAndQuiet(ctx context.Context, w *jobwatch.Watcher) error {
	before := w.Stats().Reads.Total()
	// No "table": subscriptions drop events naming another table.
	payload := fmt.Sprintf(`{"channel":%q,"operation":"update","sent_at":%q,"type":"table_changed_event"}`,
		b.mq.Channel(), time.Now().UTC().Format(time.RFC3339Nano))
	if err := b.mq.NotifyRaw(ctx, payload); err != nil {
		return err
	}
	err := waitUntil(ctx, setupTimeout, "the read after a notification", func() bool { return w.Stats().Reads.Total() > before })
	if err != nil {
		return err
	}
	// Quiet: no read for three debounce windows.
	quiet := 3 * jobwatch.DefaultDebounce
	last, since := w.Stats().Reads.Total(), time.Now()
	return waitUntil(ctx, setupTimeout, "the watcher's reads to end", func() bool {
		if r := w.Stats().Reads.Total(); r != last {
			last, since = r, time.Now()
		}
		return time.Since(since) >= quiet
	})
}

// scaleBaseline starts one poller per job, waits until each has read once,
// then completes the jobs in batches and measures until every poller has
// seen its job settle, or the baseline timeout passes (then the row is
// capped and reports what was achieved).
func (b *bench) scaleBaseline(ctx context.Context, n int) (scaleRow, memoryRow, error) {
	b.logf("scale %d: %s: setting up %d picked jobs", n, seriesBaseline, n)
	ids, err := b.prepare(ctx, n)
	if err != nil {
		return scaleRow{}, memoryRow{}, err
	}
	commitAt := make([]time.Time, b.batches(n))
	memBefore := liveMemory()
	bctx, cancel := context.WithTimeout(ctx, b.cfg.baselineTimeout)
	defer cancel()

	b.logf("scale %d: %s: starting %d pollers (capped at %s)", n, seriesBaseline, n, b.cfg.baselineTimeout)
	c := b.startCrowd(bctx, ids)
	defer c.stop()
	capped := false
	// capped reports whether err is the baseline's own time limit, and
	// passes on any other error.
	limit := func(err error) error {
		if err != nil && ctx.Err() == nil && bctx.Err() != nil {
			capped = true
			return nil
		}
		return err
	}
	err = limit(waitUntil(bctx, 0, "every poller's first read", func() bool { return c.stats.firstDone.Load() >= int64(n) }))
	if err != nil {
		return scaleRow{}, memoryRow{}, err
	}
	mem := memoryPerWaiter(seriesBaseline, n, memBefore, liveMemory(), capped)

	calls0, db0 := c.stats.clock.snapshot()
	errs0 := c.stats.errors.Load()
	start := time.Now()
	if !capped {
		b.logf("scale %d: %s: completing %d jobs, %d per transaction", n, seriesBaseline, n, b.cfg.batch)
		if err := limit(b.completeAll(bctx, ids, commitAt)); err != nil {
			return scaleRow{}, memoryRow{}, err
		}
	}
	if !capped {
		err := limit(waitUntil(bctx, 0, "every poller to see its job settle", func() bool { return c.resolved.Load() >= int64(n) }))
		if err != nil {
			return scaleRow{}, memoryRow{}, err
		}
	}
	calls1, db1 := c.stats.clock.snapshot()
	errs1 := c.stats.errors.Load()
	c.stop()
	if ctx.Err() != nil {
		return scaleRow{}, memoryRow{}, ctx.Err()
	}
	end := latest(c.seen)
	if capped || end.Before(start) {
		end = time.Now()
	}
	row := scaleRow{
		Series:   seriesBaseline,
		Waiters:  n,
		Resolved: int(c.resolved.Load()),
		Capped:   capped,
		Seconds:  end.Sub(start).Seconds(),
		Reads:    calls1 - calls0,
		IDsRead:  calls1 - calls0,
		DBCalls:  calls1 - calls0,
		DBMS:     ms(db1 - db0),
		Errors:   errs1 - errs0,
		Latency:  summarize(b.latencies(c.seen, commitAt)),
	}
	row.ResolvedPerSec = perSecond(row.Resolved, end.Sub(start))
	row.DBUSPerJob = perJobUS(db1-db0, row.Resolved)
	b.logScale(row)
	return row, mem, nil
}

// waitAllRuns is how many times each jobwatch series runs WaitAll over
// the finished jobs.
const waitAllRuns = 3

// waitAllOnce times one WaitAll over ids, all finished, with a fresh
// watcher.
func (b *bench) waitAllOnce(ctx context.Context, ids []jobwatch.JobID, feed bool) (waitAllRow, error) {
	w, clock, err := b.newWatcher(ctx, jobwatch.WithChangeFeed(feed))
	if err != nil {
		return waitAllRow{}, err
	}
	start := time.Now()
	states, err := w.WaitAll(ctx, ids)
	elapsed := time.Since(start)
	s := w.Stats()
	_, db := clock.snapshot()
	w.Close()
	if err != nil {
		return waitAllRow{}, err
	}
	for i, st := range states {
		if st != statemachine.Successful {
			return waitAllRow{}, fmt.Errorf("job %d is %s, want successful", ids[i], st)
		}
	}
	return waitAllRow{Series: seriesName(feed), Jobs: len(ids), Resolved: len(ids), Seconds: elapsed.Seconds(),
		Reads: s.Reads.Total(), IDsRead: s.IDsRead, DBMS: ms(db)}, nil
}

// waitAllFinished times WaitAll over jobs that have all finished, with a
// fresh watcher and default options, and the baseline's pollers over them.
func (b *bench) waitAllFinished(ctx context.Context) ([]waitAllRow, error) {
	n := b.cfg.finished
	ids := b.finishedIDs
	if len(ids) < n {
		b.logf("wait-all: setting up %d finished jobs", n)
		var err error
		if ids, err = b.prepare(ctx, n); err != nil {
			return nil, err
		}
		if err := b.completeAll(ctx, ids, nil); err != nil {
			return nil, err
		}
	}
	// Each series runs waitAllRuns times, interleaved, and reports its
	// median run: the first full read of freshly written rows costs more
	// (PostgreSQL sets their hint bits), which would otherwise count
	// against whichever series went first.
	b.checkpoint(ctx)
	runs := map[bool][]waitAllRow{}
	for round := range waitAllRuns {
		for _, feed := range []bool{true, false} {
			series := seriesName(feed)
			b.logf("wait-all: %s over %d finished jobs, run %d of %d", series, n, round+1, waitAllRuns)
			if err := b.warmPool(ctx, ids); err != nil {
				return nil, err
			}
			row, err := b.waitAllOnce(ctx, ids, feed)
			if err != nil {
				return nil, fmt.Errorf("wait-all, %s: %w", series, err)
			}
			b.logf("wait-all: %s: %.3fs", series, row.Seconds)
			runs[feed] = append(runs[feed], row)
		}
	}
	var rows []waitAllRow
	for _, feed := range []bool{true, false} {
		rs := slices.Clone(runs[feed])
		slices.SortFunc(rs, func(a, b waitAllRow) int { return cmpFloat(a.Seconds, b.Seconds) })
		med := rs[len(rs)/2]
		for _, r := range runs[feed] {
			med.SecondsAll = append(med.SecondsAll, r.Seconds)
		}
		rows = append(rows, med)
	}

	b.logf("wait-all: %s over %d finished jobs (capped at %s)", seriesBaseline, n, b.cfg.baselineTimeout)
	bctx, cancel := context.WithTimeout(ctx, b.cfg.baselineTimeout)
	defer cancel()
	start := time.Now()
	c := b.startCrowd(bctx, ids)
	err := waitUntil(bctx, 0, "every poller to see its job settle", func() bool { return c.resolved.Load() >= int64(n) })
	elapsed := time.Since(start)
	c.stop()
	capped := false
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil && errors.Is(bctx.Err(), context.DeadlineExceeded):
		capped = true
	case err != nil:
		return nil, err
	}
	calls, db := c.stats.clock.snapshot()
	rows = append(rows, waitAllRow{Series: seriesBaseline, Jobs: n, Resolved: int(c.resolved.Load()), Capped: capped,
		Seconds: elapsed.Seconds(), Reads: calls, IDsRead: calls, DBMS: ms(db)})
	b.logf("wait-all: %s: %.3fs, %d resolved", seriesBaseline, elapsed.Seconds(), c.resolved.Load())
	return rows, nil
}
