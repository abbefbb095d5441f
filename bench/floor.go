package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// floorWarmup samples are taken and dropped before each floor measurement.
const floorWarmup = 10

// floor measures, on the watcher's role, one NOTIFY round trip (pg_notify
// from the pool, received on a dedicated LISTEN connection) and one
// indexed status read (FetchStatuses of one id): the least a notified
// wait can cost.
func (b *bench) floor(ctx context.Context, id jobwatch.JobID) (*floorRow, error) {
	n := b.cfg.floorSamples
	b.logf("floor: %d NOTIFY round trips and %d one-id status reads", n, n)
	db, err := openMeasured(ctx, b.cfg.driver, b.t.watcherDSN, b.t.schema, b.cfg.pool)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	channel := b.t.schema + "_floor"
	l, err := db.listenRaw(ctx, channel)
	if err != nil {
		return nil, err
	}
	defer l.close()
	rtt := make([]float64, 0, n)
	for i := range n + floorWarmup {
		start := time.Now()
		if err := db.notify(ctx, channel, "bench"); err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := l.receive(rctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("notify round trip: %w", err)
		}
		if i >= floorWarmup {
			rtt = append(rtt, ms(time.Since(start)))
		}
	}
	reads := make([]float64, 0, n)
	for i := range n + floorWarmup {
		start := time.Now()
		st, err := db.Queue.FetchStatuses(ctx, []jobwatch.JobID{id})
		if err != nil {
			return nil, err
		}
		if len(st) != 1 {
			return nil, fmt.Errorf("status read of job %d returned %d rows", id, len(st))
		}
		if i >= floorWarmup {
			reads = append(reads, ms(time.Since(start)))
		}
	}
	f := &floorRow{NotifyRoundTrip: summarize(rtt), StatusRead: summarize(reads)}
	f.FloorMS = f.NotifyRoundTrip.P50 + f.StatusRead.P50
	b.logf("floor: NOTIFY round trip p50 %s ms + status read p50 %s ms = %s ms", fmtMS(f.NotifyRoundTrip.P50), fmtMS(f.StatusRead.P50), fmtMS(f.FloorMS))
	return f, nil
}

// debounce0 measures series s (a jobwatch one) with debounce 0, one wait
// at a time: start a wait, let its first read end, complete the job on
// the workers' role, and time from the completing call's return to Wait's.
// One Watcher serves every sample, as in a service. A sample where Wait
// returned first counts as 0: the server notifies listeners as it answers
// the commit.
func (b *bench) debounce0(ctx context.Context, s seriesID, ids []jobwatch.JobID) (d0Row, error) {
	row := d0Row{Series: s, Label: s.label()}
	b.logf("debounce 0, %s: %d waits, one at a time", s.label(), len(ids))
	db, err := openMeasured(ctx, b.cfg.driver, b.t.watcherDSN, b.t.schema, b.cfg.pool)
	if err != nil {
		return row, err
	}
	defer db.Close()
	if err := b.counter.reset(ctx); err != nil {
		return row, err
	}
	zero, err := b.counter.take(ctx)
	if err != nil {
		return row, err
	}
	opts := []jobwatch.Option{jobwatch.WithDebounce(0)}
	if s == seriesNoFeed {
		opts = append(opts, jobwatch.WithChangeFeed(false))
	}
	w, err := jobwatch.New(db.Queue, opts...)
	if err != nil {
		return row, err
	}
	defer w.Close()
	if err := waitUntil(ctx, startupTimeout, "the watcher to listen", func() bool { return w.Stats().Listening }); err != nil {
		return row, err
	}
	lat := make([]float64, 0, len(ids))
	for _, id := range ids {
		d, err := b.oneWait(ctx, w, id)
		if err != nil {
			return row, err
		}
		lat = append(lat, ms(d))
	}
	end, err := b.counter.take(ctx)
	if err != nil {
		return row, err
	}
	c, _ := end.since(zero)
	row.Latency = summarize(lat)
	row.PerWait = divide(c, len(ids))
	b.logf("debounce 0, %s: p50 %s ms, p99 %s ms; %.2f statements, %.4f ms DB time per wait",
		s.label(), fmtMS(row.Latency.P50), fmtMS(row.Latency.P99), row.PerWait.Statements, row.PerWait.DBMS)
	return row, nil
}

// oneWait is one debounce-0 sample.
func (b *bench) oneWait(ctx context.Context, w *jobwatch.Watcher, id jobwatch.JobID) (time.Duration, error) {
	before := w.Stats().IDsRead
	type result struct {
		at  time.Time
		err error
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := make(chan result, 1)
	go func() {
		_, err := w.Wait(wctx, id)
		res <- result{time.Now(), err}
	}()
	fail := func(err error) (time.Duration, error) {
		cancel()
		<-res
		return 0, err
	}
	if err := waitUntil(ctx, time.Minute, "a wait's first read", func() bool { return w.Stats().IDsRead > before }); err != nil {
		return fail(err)
	}
	if err := b.workers.Queue.Apply(ctx, statemachine.Complete, id); err != nil {
		return fail(err)
	}
	committed := time.Now()
	r := <-res
	if r.err != nil {
		return 0, fmt.Errorf("wait on job %d: %w", id, r.err)
	}
	return nonNegative(r.at.Sub(committed)), nil
}
