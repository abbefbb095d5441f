package main

import (
	"context"

	"github.com/jobwatch/jobwatch"
)

// idle waits on ids, which nothing changes, for the idle phase, the way
// series s does, counting start-up and the idle phase apart.
func (b *bench) idle(ctx context.Context, ids []jobwatch.JobID, s seriesID) (idleRow, error) {
	row := idleRow{W: len(ids), Series: s, Label: s.label(), IdleS: b.cfg.idle.Seconds()}
	db, err := openMeasured(ctx, b.cfg.driver, b.t.watcherDSN, b.t.schema, b.cfg.pool)
	if err != nil {
		return row, err
	}
	defer db.Close()
	rec := newRecorder(ids)
	m, err := b.startMeasured(ctx, s, db, ids, rec)
	if err != nil {
		return row, err
	}
	defer m.stop()
	row.StartupS, row.StartupCost = m.startup.Seconds(), m.startupCost()
	b.logf("idle, %s, %d pending: start-up took %.2fs (%s); now idle for %s", s.label(), len(ids), row.StartupS, row.StartupCost.describe(), b.cfg.idle)
	if !sleep(ctx, b.cfg.idle) {
		return row, ctx.Err()
	}
	end, err := b.counter.take(ctx)
	if err != nil {
		return row, err
	}
	row.IdleCost, row.Evicted = end.since(m.up)
	total, _ := end.since(m.zero)
	row.Watcher = m.stop()
	row.Resolved = int(rec.resolved.Load())
	row.CorePct = 100 * row.IdleCost.ExecMS / ms(b.cfg.idle)
	row.CorePctWithStartup = 100 * total.ExecMS / ms(m.startup+b.cfg.idle)
	b.logf("idle, %s, %d pending: %s in %s: %.3f%% of one core (%.3f%% with start-up)",
		s.label(), len(ids), row.IdleCost.describe(), b.cfg.idle, row.CorePct, row.CorePctWithStartup)
	return row, nil
}
