package pgx

import (
	"context"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Enqueue inserts jobs, each with its "queued" log row, in one statement
// (one transaction, one NOTIFY) and returns their ids in input order. An
// invalid job returns an error matching ErrInvalidJob and writes nothing; a
// dedupe key already held by a queued or picked job (or repeated in jobs)
// returns an error matching ErrDuplicate and writes nothing.
func (b *Backend) Enqueue(ctx context.Context, jobs ...NewJob) ([]jobwatch.JobID, error) {
	return b.core.Enqueue(ctx, jobs)
}

// Claim picks up to req.Limit queued jobs of req.Entrypoints whose
// execute_after has passed, highest priority first, then oldest, skipping
// jobs other claimers hold (FOR UPDATE SKIP LOCKED); it marks them picked
// and logs it, in one transaction, and returns them in that order. When
// there is nothing to claim it writes nothing and returns no jobs.
func (b *Backend) Claim(ctx context.Context, req ClaimRequest) ([]Job, error) {
	return b.core.Claim(ctx, req)
}

// Apply applies ev to every id in one transaction, all or nothing: each job
// must be in a state ev is legal from (statemachine.Sources), checked by the
// statement itself under row locks. If any is not (including because a
// concurrent transaction changed it), nothing is written and the error is
// a *statemachine.TransitionError for the first such job, with its current
// status (matching statemachine.ErrIllegalTransition; an id the database
// has never seen also matches ErrUnknownJob). Terminal events delete the
// queue rows; all events log the new status. Enqueue is not accepted (use
// Enqueue). ids must be positive and not empty (else an error matching
// jobwatch.ErrInvalidID); duplicates count once.
func (b *Backend) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, ev, ids, "")
}

// Complete marks picked jobs successful (deleting their queue rows).
func (b *Backend) Complete(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Complete, ids, "")
}

// Exception marks a picked job as failed with an exception, storing
// traceback (encoded with encoding/json; a json.RawMessage is stored as is;
// nil stores NULL) in its log row.
func (b *Backend) Exception(ctx context.Context, id jobwatch.JobID, traceback any) error {
	return b.core.Exception(ctx, id, traceback)
}

// Cancel cancels queued or picked jobs.
func (b *Backend) Cancel(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Cancel, ids, "")
}

// Hold parks picked jobs as failed (held) with their payload, until
// Requeue or Delete.
func (b *Backend) Hold(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Hold, ids, "")
}

// Retry puts picked jobs back in the queue, counting an attempt.
func (b *Backend) Retry(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Retry, ids, "")
}

// Requeue puts held (failed) jobs back in the queue, resetting their
// attempts as PgQueuer does.
func (b *Backend) Requeue(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Requeue, ids, "")
}

// Delete deletes queued or held jobs.
func (b *Backend) Delete(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Delete, ids, "")
}
