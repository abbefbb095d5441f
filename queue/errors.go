package queue

import (
	"errors"
	"fmt"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Sentinel errors, matched with errors.Is. Every Queue implementation
// returns these values. backends/pgx, backends/pq and backends/fake also
// export ErrUnknownJob, ErrDuplicate and ErrInvalidJob under the same
// names: the same values, so errors.Is matches either.
var (
	// ErrUnknownJob: a call named a job the queue has never seen (no log
	// row). From a transition, the error also matches
	// statemachine.ErrIllegalTransition; from Heartbeat, ErrNotPicked.
	ErrUnknownJob = errors.New("queue: unknown job")
	// ErrDuplicate: a dedupe key is already held by a queued or picked
	// job, or repeated within one Enqueue. The error is a *DuplicateError.
	ErrDuplicate = errors.New("queue: duplicate dedupe key")
	// ErrInvalidJob: a NewJob, ClaimRequest or Traceback that cannot be
	// written. Nothing is written.
	ErrInvalidJob = errors.New("queue: invalid job")
	// ErrNotPicked: Heartbeat named a job that is not picked. The error is
	// a *NotPickedError.
	ErrNotPicked = errors.New("queue: job not picked")
)

// DuplicateError is a refused write whose dedupe key is taken. It matches
// ErrDuplicate.
type DuplicateError struct {
	// Index is the position of the refused job in the call's input: in the
	// jobs of Enqueue, or in the ids of Requeue.
	Index int
	// Key is its dedupe key.
	Key string
	// ID is the queued or picked job that holds Key, which the caller can
	// wait on instead. It is 0 when Key is repeated within one Enqueue
	// (jobs[Index] repeats an earlier job of the same call), and when the
	// holder ended, and a new one took the key, faster than the write could
	// be retried, several times in a row.
	ID jobwatch.JobID
}

func (e *DuplicateError) Error() string {
	switch {
	case e.ID > 0:
		return fmt.Sprintf("queue: duplicate dedupe key: job %d: key %q is held by job %d", e.Index, truncate(e.Key), int64(e.ID))
	case e.Index >= 0:
		return fmt.Sprintf("queue: duplicate dedupe key: job %d: key %q is taken (repeated in the batch, or its holders keep changing)", e.Index, truncate(e.Key))
	}
	return fmt.Sprintf("queue: duplicate dedupe key %q", truncate(e.Key))
}

// Is makes errors.Is(err, ErrDuplicate) true.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// NotPickedError is a Heartbeat of a job that is not picked: it ended, was
// put back in the queue, or never existed. It matches ErrNotPicked, and
// ErrUnknownJob as well when State is statemachine.None.
type NotPickedError struct {
	ID    jobwatch.JobID
	State statemachine.State // the job's current state; None: unknown job
}

func (e *NotPickedError) Error() string {
	if e.State == statemachine.None {
		return fmt.Sprintf("queue: job not picked: job %d does not exist", int64(e.ID))
	}
	return fmt.Sprintf("queue: job not picked: job %d is %s", int64(e.ID), e.State)
}

// Is makes errors.Is match ErrNotPicked, and ErrUnknownJob for an unknown
// job.
func (e *NotPickedError) Is(target error) bool {
	return target == ErrNotPicked || (target == ErrUnknownJob && e.State == statemachine.None)
}

// UnknownJobError is the error of a transition of a job the queue has never
// seen, as every implementation returns it: it matches ErrUnknownJob and
// statemachine.ErrIllegalTransition, and errors.As finds the
// *statemachine.TransitionError (From None).
func UnknownJobError(ev statemachine.Event, id jobwatch.JobID) error {
	return fmt.Errorf("%w %d: %w", ErrUnknownJob, int64(id), &statemachine.TransitionError{ID: int64(id), Event: ev})
}

// truncate keeps messages short when fed hostile input.
func truncate(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
