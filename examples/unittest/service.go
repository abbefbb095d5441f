package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobwatch/jobwatch"
	jwpgx "github.com/jobwatch/jobwatch/backends/pgx"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Queue is all ProcessOrder needs from the job queue. Keeping it this small
// is what makes ProcessOrder easy to test: production passes PgxQueue, the
// tests pass fakeQueue, over the in-memory backend.
type Queue interface {
	// Enqueue hands order to the workers and returns its job's id.
	Enqueue(ctx context.Context, order string) (jobwatch.JobID, error)
}

// The outcomes of an order other than success. Callers tell them apart with
// errors.Is, for example to choose an HTTP status.
var (
	ErrRejected = errors.New("order rejected")         // the worker raised an exception
	ErrCanceled = errors.New("order canceled")         // canceled or deleted before it finished
	ErrTimeout  = errors.New("order still processing") // not finished in time; it may still finish
)

// ProcessOrder enqueues order and waits up to timeout for its job to end,
// mapping the job's final state to nil or one of the errors above. It
// returns the job's id whenever the job was enqueued, so that a caller that
// timed out can report it and look again later.
func ProcessOrder(ctx context.Context, w *jobwatch.Watcher, q Queue, order string, timeout time.Duration) (jobwatch.JobID, error) {
	id, err := q.Enqueue(ctx, order)
	if err != nil {
		return 0, fmt.Errorf("order %s: enqueue: %w", order, err)
	}
	// The cause tells our own timeout (ErrTimeout) from the caller's ctx
	// ending (a client that hung up), which keeps its own error.
	waitCtx, cancel := context.WithTimeoutCause(ctx, timeout, ErrTimeout)
	defer cancel()
	state, err := w.Wait(waitCtx, id)
	if err != nil {
		if waitCtx.Err() != nil {
			err = context.Cause(waitCtx)
		}
		return id, fmt.Errorf("order %s (job %d): %w", order, id, err)
	}
	switch state {
	case statemachine.Successful:
		return id, nil
	case statemachine.Exception:
		return id, fmt.Errorf("order %s (job %d): %w", order, id, ErrRejected)
	case statemachine.Canceled, statemachine.Deleted:
		return id, fmt.Errorf("order %s (job %d): %w", order, id, ErrCanceled)
	}
	// Only a Watcher made WithSettleOnHold ends a wait on a held job.
	return id, fmt.Errorf("order %s (job %d): unexpected state %s", order, id, state)
}

// PgxQueue is the Queue of production: "process_order" jobs on PostgreSQL,
// for PgQueuer workers, Python or Go. Nothing in this example runs it; it is
// here to show the other side of the Queue interface.
type PgxQueue struct{ Backend *jwpgx.Backend }

// Enqueue implements Queue.
func (q PgxQueue) Enqueue(ctx context.Context, order string) (jobwatch.JobID, error) {
	ids, err := q.Backend.Enqueue(ctx, jwpgx.NewJob{Entrypoint: "process_order", Payload: []byte(order)})
	if err != nil {
		return 0, err
	}
	return ids[0], nil
}
