package main

import (
	"context"
	"time"

	"github.com/jobwatch/jobwatch"
)

// measured is a series' waits, started with the watcher role's counters
// read just before New (zero) and at the end of start-up (up).
type measured struct {
	ws       waiters
	zero, up snapshot
	startup  time.Duration
	stopped  bool
}

// startMeasured resets the watcher role's counters, starts series s
// waiting on ids, and returns once every wait has made its start-up read.
// The caller stops it (stop is idempotent).
func (b *bench) startMeasured(ctx context.Context, s seriesID, db measuredDB, ids []jobwatch.JobID, rec *recorder) (*measured, error) {
	if err := b.counter.reset(ctx); err != nil {
		return nil, err
	}
	zero, err := b.counter.take(ctx)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	ws, err := b.startWaiters(ctx, s, db, ids, rec)
	if err != nil {
		return nil, err
	}
	m := &measured{ws: ws, zero: zero}
	if err := waitUntil(ctx, startupTimeout, "every wait's start-up read", ws.started); err != nil {
		m.stop()
		return nil, err
	}
	m.startup = time.Since(t0)
	if m.up, err = b.counter.take(ctx); err != nil {
		m.stop()
		return nil, err
	}
	return m, nil
}

func (m *measured) startupCost() cost {
	c, _ := m.up.since(m.zero)
	return c
}

// stop ends the waits; the first call returns the watcher's Stats.
func (m *measured) stop() *statsJSON {
	if m.stopped {
		return nil
	}
	m.stopped = true
	return m.ws.stop()
}
