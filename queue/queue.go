package queue

import (
	"context"

	"github.com/jobwatch/jobwatch"
)

// Queue enqueues, claims and finishes jobs, and reads back what happened to
// one. backends/pgx, backends/pq and backends/fake implement it.
//
// Implementations are safe for concurrent use. Every method blocks until its
// write or read is done, honours ctx, and writes all or nothing: a call that
// returns an error has changed nothing. Each write is one transaction with
// its log rows, as PgQueuer writes them.
//
// Methods taking ids reject an empty list and ids <= 0 with an error
// matching jobwatch.ErrInvalidID; a repeated id counts once. A transition
// that is illegal for any of the ids (including an id the queue has never
// seen) changes nothing and returns a *statemachine.TransitionError for the
// first such job, with ID and From set, matching
// statemachine.ErrIllegalTransition; for an unknown job it also matches
// ErrUnknownJob.
type Queue interface {
	// Enqueue inserts jobs, in order, each with its "queued" log row, and
	// returns their ids, ascending in input order. A job that cannot be
	// written returns an error matching ErrInvalidJob. A dedupe key held
	// by a queued or picked job, or repeated within jobs, returns a
	// *DuplicateError (matching ErrDuplicate) naming the job that holds
	// it, so that the caller can wait on that job instead.
	Enqueue(ctx context.Context, jobs ...NewJob) ([]jobwatch.JobID, error)

	// Claim picks up to req.Limit queued jobs of req.Entrypoints whose
	// ExecuteAfter has passed, highest priority first, then oldest, marks
	// them picked and returns them in that order. Concurrent claimers never
	// get the same job. Nothing to claim returns no jobs and no error. A
	// request that fails ClaimRequest.Validate returns an error matching
	// ErrInvalidJob.
	Claim(ctx context.Context, req ClaimRequest) ([]Job, error)

	// Heartbeat tells the queue that the picked jobs ids are still being
	// worked on: it sets their heartbeat to now (PgQueuer re-claims a
	// picked job whose heartbeat went stale). It logs nothing and changes
	// no state. A job that is not picked returns a *NotPickedError.
	Heartbeat(ctx context.Context, ids ...jobwatch.JobID) error

	// Complete ends picked jobs as successful.
	Complete(ctx context.Context, ids ...jobwatch.JobID) error

	// Exception ends a picked job as exception, storing tb (see
	// Traceback.Encode) in its log row. A traceback that cannot be stored
	// returns an error matching ErrInvalidJob.
	Exception(ctx context.Context, id jobwatch.JobID, tb Traceback) error

	// Cancel ends queued or picked jobs as canceled.
	Cancel(ctx context.Context, ids ...jobwatch.JobID) error

	// Hold parks picked jobs as failed, with their payload, until Requeue
	// or Delete. A held job holds no dedupe key.
	Hold(ctx context.Context, ids ...jobwatch.JobID) error

	// Retry puts picked jobs back in the queue, ready at once, counting an
	// attempt.
	Retry(ctx context.Context, ids ...jobwatch.JobID) error

	// Requeue puts held (failed) jobs back in the queue, ready at once,
	// with their attempts reset, as PgQueuer does. A held job whose dedupe
	// key another job took meanwhile returns a *DuplicateError naming it.
	Requeue(ctx context.Context, ids ...jobwatch.JobID) error

	// Delete ends queued or held jobs as deleted.
	Delete(ctx context.Context, ids ...jobwatch.JobID) error

	// Inspect returns what the queue holds about job id: its current
	// state, its queue row while it has one, and its history from the log,
	// with any traceback parsed. A job the queue has no log row of returns
	// an error matching ErrUnknownJob; id <= 0, one matching
	// jobwatch.ErrInvalidID.
	Inspect(ctx context.Context, id jobwatch.JobID) (JobInfo, error)
}
