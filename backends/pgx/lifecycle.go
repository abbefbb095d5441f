package pgx

import (
	"context"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// The lifecycle's sentinel errors: the values of package queue (errors.Is
// matches either name).
var (
	// ErrUnknownJob is queue.ErrUnknownJob: a call named a job the
	// database has never seen. From a transition it also matches
	// statemachine.ErrIllegalTransition.
	ErrUnknownJob = queue.ErrUnknownJob
	// ErrDuplicate is queue.ErrDuplicate: a dedupe key is taken; the error
	// is a *queue.DuplicateError naming the job that holds it.
	ErrDuplicate = queue.ErrDuplicate
	// ErrInvalidJob is queue.ErrInvalidJob: a NewJob, ClaimRequest or
	// Traceback that cannot be written.
	ErrInvalidJob = queue.ErrInvalidJob
)

var _ queue.Queue = (*Backend)(nil)

// Enqueue implements queue.Queue: it inserts jobs, each with its "queued"
// log row, in one statement (one transaction, one NOTIFY) and returns their
// ids in input order. An invalid job returns an error matching
// ErrInvalidJob; a dedupe key already held by a queued or picked job (or
// repeated in jobs) returns a *queue.DuplicateError naming the holder.
// Either way nothing is written.
func (b *Backend) Enqueue(ctx context.Context, jobs ...queue.NewJob) ([]jobwatch.JobID, error) {
	return b.core.Enqueue(ctx, jobs)
}

// Claim implements queue.Queue: it picks up to req.Limit queued jobs of
// req.Entrypoints whose execute_after has passed, highest priority first,
// then oldest, skipping jobs other claimers hold (FOR UPDATE SKIP LOCKED);
// it marks them picked and logs it, in one transaction, and returns them in
// that order. When there is nothing to claim it writes nothing.
func (b *Backend) Claim(ctx context.Context, req queue.ClaimRequest) ([]queue.Job, error) {
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
// jobwatch.ErrInvalidID); duplicates count once. The named methods
// (Complete, Cancel, ...) are Apply with their event.
func (b *Backend) Apply(ctx context.Context, ev statemachine.Event, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, ev, ids, "")
}

// Heartbeat implements queue.Queue: it sets the heartbeat of picked jobs
// to now, logging nothing; a job that is not picked returns a
// *queue.NotPickedError and nothing is written.
func (b *Backend) Heartbeat(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Heartbeat(ctx, ids)
}

// Complete implements queue.Queue: picked jobs end successful (their queue
// rows are deleted). Errors are Apply's.
func (b *Backend) Complete(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Complete, ids, "")
}

// Exception implements queue.Queue: a picked job ends as exception, with
// tb stored in its log row's traceback column as PgQueuer's
// TracebackRecord JSON (queue.Traceback.Encode). Errors are Apply's, and
// one matching ErrInvalidJob for a traceback that cannot be stored.
func (b *Backend) Exception(ctx context.Context, id jobwatch.JobID, tb queue.Traceback) error {
	return b.core.Exception(ctx, id, tb)
}

// Cancel implements queue.Queue: queued or picked jobs end canceled.
func (b *Backend) Cancel(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Cancel, ids, "")
}

// Hold implements queue.Queue: picked jobs are parked as failed (held)
// with their payload, until Requeue or Delete.
func (b *Backend) Hold(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Hold, ids, "")
}

// Retry implements queue.Queue: picked jobs go back in the queue, counting
// an attempt.
func (b *Backend) Retry(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Retry, ids, "")
}

// Requeue implements queue.Queue: held (failed) jobs go back in the queue
// with their attempts reset, as PgQueuer does. A held job whose dedupe key
// another job took meanwhile returns a *queue.DuplicateError naming it.
func (b *Backend) Requeue(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Requeue, ids, "")
}

// Delete implements queue.Queue: queued or held jobs end deleted.
func (b *Backend) Delete(ctx context.Context, ids ...jobwatch.JobID) error {
	return b.core.Apply(ctx, statemachine.Delete, ids, "")
}

// Inspect implements queue.Queue: job id's current state, its queue row
// while it has one, and its log with tracebacks parsed, read from one
// snapshot. A job with no log row returns an error matching ErrUnknownJob.
func (b *Backend) Inspect(ctx context.Context, id jobwatch.JobID) (queue.JobInfo, error) {
	return b.core.Inspect(ctx, id)
}
