package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Entrypoint is the job ProcessOrder enqueues, for the order workers.
const Entrypoint = "process_order"

// The outcomes of an order other than success. Callers tell them apart with
// errors.Is, for example to choose an HTTP status.
var (
	ErrRejected     = errors.New("order rejected")         // the worker raised an exception
	ErrCanceled     = errors.New("order canceled")         // canceled or deleted before it finished
	ErrTimeout      = errors.New("order still processing") // not finished in time; it may still finish
	ErrUnknownOrder = errors.New("unknown order")          // no such job
)

// ProcessOrder enqueues order and waits up to timeout for its job to end,
// as WaitOrder does. It returns the job's id whenever the job was
// enqueued, so that a caller that timed out can report it and wait again
// later.
//
// It only uses queue.Queue and a Watcher: the tests run it on the
// in-memory backend, production on backends/pgx or backends/pq.
func ProcessOrder(ctx context.Context, w *jobwatch.Watcher, q queue.Queue, order string, timeout time.Duration) (jobwatch.JobID, error) {
	ids, err := q.Enqueue(ctx, queue.NewJob{Entrypoint: Entrypoint, Payload: []byte(order)})
	if err != nil {
		return 0, fmt.Errorf("order %s: enqueue: %w", order, err)
	}
	if err := WaitOrder(ctx, w, q, ids[0], timeout); err != nil {
		return ids[0], fmt.Errorf("order %s %w", order, err)
	}
	return ids[0], nil
}

// WaitOrder waits up to timeout for the order of job id to end, and maps
// its final state to nil or one of the errors above. A rejected order's
// error says why: the worker's exception message, read with Inspect once
// the wait says "exception".
func WaitOrder(ctx context.Context, w *jobwatch.Watcher, q queue.Queue, id jobwatch.JobID, timeout time.Duration) error {
	// The cause tells our own timeout (ErrTimeout) from the caller's ctx
	// ending (a client that hung up), which keeps its own error.
	waitCtx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()
	state, err := w.Wait(waitCtx, id)
	switch {
	case errors.Is(err, jobwatch.ErrNotFound):
		return fmt.Errorf("(job %d): %w", id, ErrUnknownOrder)
	case err != nil && waitCtx.Err() != nil:
		return fmt.Errorf("(job %d): %w", id, context.Cause(waitCtx))
	case err != nil:
		return fmt.Errorf("(job %d): %w", id, err)
	}
	switch state {
	case statemachine.Successful:
		return nil
	case statemachine.Exception:
		return fmt.Errorf("(job %d): %w: %s", id, ErrRejected, reason(ctx, q, id))
	case statemachine.Canceled, statemachine.Deleted:
		return fmt.Errorf("(job %d): %w", id, ErrCanceled)
	}
	// Only a Watcher made WithSettleOnHold ends a wait on a held job.
	return fmt.Errorf("(job %d): unexpected state %s", id, state)
}

// reason is the exception message of a job that ended as exception.
func reason(ctx context.Context, q queue.Queue, id jobwatch.JobID) string {
	info, err := q.Inspect(ctx, id)
	switch {
	case err != nil:
		return fmt.Sprintf("(reason unknown: %v)", err)
	case info.Traceback() == nil:
		return "(no reason recorded)"
	}
	return info.Traceback().ExceptionMessage
}
