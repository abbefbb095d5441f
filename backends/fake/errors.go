package fake

import "errors"

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
	// ErrUnknownJob: a write named a job that does not exist (ids <= 0
	// never exist).
	ErrUnknownJob = errors.New("fake: unknown job")
	// ErrInjected: the default error of FailReads and FailListens.
	ErrInjected = errors.New("fake: injected failure")
	// ErrInvalidArgument: a nil context or function, n <= 0 or too large,
	// no ids, or Enqueue passed to Apply.
	ErrInvalidArgument = errors.New("fake: invalid argument")
	// ErrTxDone: a Tx was used after its function returned.
	ErrTxDone = errors.New("fake: transaction already finished")
	// ErrConflict: a Tx could not commit because a concurrent commit made
	// one of its transitions illegal; nothing was changed.
	ErrConflict = errors.New("fake: transaction conflict")
)
