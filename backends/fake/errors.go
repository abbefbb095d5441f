package fake

import (
	"errors"

	"github.com/jobwatch/jobwatch/queue"
)

// Sentinel errors, matched with errors.Is. Errors returned by this package
// wrap them with context.
var (
	// ErrClosed: the Backend was closed. Listen, FetchStatuses, the write
	// path and the Wait helpers return it afterwards; live subscriptions
	// fail with it.
	ErrClosed = errors.New("fake: backend closed")
	// ErrSubscriptionClosed: Next was called on (or interrupted by) a
	// subscription its owner closed.
	ErrSubscriptionClosed = errors.New("fake: subscription closed")
	// ErrDisconnected: the subscription's connection was lost (see
	// Backend.Disconnect). Notifications it had buffered are lost; call
	// Listen again and re-read statuses.
	ErrDisconnected = errors.New("fake: connection lost")
	// ErrUnknownJob is queue.ErrUnknownJob (the same value): a write or
	// Inspect named a job that does not exist. From a transition the error
	// also matches statemachine.ErrIllegalTransition, as on PostgreSQL.
	ErrUnknownJob = queue.ErrUnknownJob
	// ErrDuplicate is queue.ErrDuplicate: a dedupe key is taken; the error
	// is a *queue.DuplicateError naming the job that holds it.
	ErrDuplicate = queue.ErrDuplicate
	// ErrInvalidJob is queue.ErrInvalidJob: a NewJob, ClaimRequest or
	// Traceback that cannot be written.
	ErrInvalidJob = queue.ErrInvalidJob
	// ErrInjected: the default error of FailReads and FailListens.
	ErrInjected = errors.New("fake: injected failure")
	// ErrInvalidArgument: a nil context or function, an EnqueueN count
	// that is not 1..MaxBatch, no ids or an id <= 0 (those errors match
	// jobwatch.ErrInvalidID too), an invalid event or Enqueue passed to
	// Apply (matching statemachine.ErrIllegalTransition too), or a cursor
	// the fake did not make.
	ErrInvalidArgument = errors.New("fake: invalid argument")
	// ErrTxDone: a Tx was used after its function returned.
	ErrTxDone = errors.New("fake: transaction already finished")
	// ErrConflict: a Tx could not commit because a concurrent commit made
	// one of its transitions illegal; nothing was changed.
	ErrConflict = errors.New("fake: transaction conflict")
)
