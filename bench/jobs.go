package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
	jwqueue "github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// enqueueChunk is how many jobs one Enqueue (and one Claim) carries while
// the bench sets jobs up.
const enqueueChunk = 5000

// prepare enqueues n jobs and claims them, on the workers' role, and
// returns their ids in order. The jobs are picked: one Complete ends each.
// Then the tables are vacuumed and analyzed, as autovacuum keeps a
// long-running queue, and a checkpoint writes out the setup's bulk writes,
// so that the measured phase does not pay for them.
func (b *bench) prepare(ctx context.Context, n int) ([]jobwatch.JobID, error) {
	jobs := make([]jwqueue.NewJob, min(n, enqueueChunk))
	for i := range jobs {
		jobs[i] = jwqueue.NewJob{Entrypoint: "bench"}
	}
	ids := make([]jobwatch.JobID, 0, n)
	for len(ids) < n {
		got, err := b.workers.Queue.Enqueue(ctx, jobs[:min(len(jobs), n-len(ids))]...)
		if err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
		if err := b.workers.Queue.Apply(ctx, statemachine.Claim, got...); err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		ids = append(ids, got...)
	}
	if err := b.quiesce(ctx); err != nil {
		return nil, err
	}
	return ids, nil
}

// quiesce vacuums and analyzes the queue's tables and runs a checkpoint.
func (b *bench) quiesce(ctx context.Context) error {
	q := b.workers.Queue
	if _, err := b.t.admin.Exec(ctx, "VACUUM (ANALYZE) "+q.QueueTable()+", "+q.LogTable()); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	if _, err := b.t.admin.Exec(ctx, "CHECKPOINT"); err != nil && ctx.Err() == nil && !b.noCheckpoint {
		// It needs superuser or pg_checkpoint; the run goes on, noisier.
		b.noCheckpoint = true
		b.logf("note: CHECKPOINT refused (%v); timings after bulk writes may be noisier", err)
	}
	return ctx.Err()
}

// waitUntil checks cond every millisecond until it holds, ctx is done or
// timeout passes. The bench polls Stats: a start-up read sends no signal.
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
