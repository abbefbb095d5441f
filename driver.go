// Package jobwatch waits for jobs in a PostgreSQL job queue to reach their
// final status. Changes are pushed by LISTEN/NOTIFY, a safety-net poll
// repairs anything lost, and the database cost does not depend on how many
// callers wait on a job.
//
// A Watcher sits on top of a Driver, the two-method contract that backends
// implement: backends/pgx (jackc/pgx v5), backends/pq (lib/pq with sqlx) and
// backends/fake (in memory, for unit tests). The conformance package checks
// that a Driver behaves as this package expects.
package jobwatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/jobwatch/jobwatch/statemachine"
)

// JobID identifies a job: the id column of the queue table. Valid ids are
// positive.
type JobID int64

// Status is a job's current state as the database records it.
type Status struct {
	ID    JobID
	State statemachine.State
}

// String formats the status as "<id> <state>", the line format of the
// jobwatch command.
func (s Status) String() string { return fmt.Sprintf("%d %s", s.ID, s.State) }

// Driver is what a backend implements. Its two methods are the whole
// contract; extra capabilities are optional interfaces a Watcher discovers by
// type assertion.
//
// Implementations must be safe for concurrent use by multiple goroutines.
type Driver interface {
	// Listen subscribes to change notifications. It blocks until the
	// subscription is active, so that a status read made after Listen
	// returns cannot miss a change committed after that read. It honours
	// ctx. A backend that cannot listen at all (a database/sql handle
	// without a listener, PgBouncer in transaction pooling) returns an error
	// matching ErrListenUnsupported; the Watcher then runs on its poll alone.
	Listen(ctx context.Context) (Subscription, error)

	// FetchStatuses returns the current status of each known id, in any
	// order, at most once per id; unknown ids are omitted and duplicates in
	// ids are allowed. An empty ids returns an empty result without touching
	// the database. It honours ctx and returns an error, never a partial
	// result, when the read fails.
	FetchStatuses(ctx context.Context, ids []JobID) ([]Status, error)
}

// Subscription is one active LISTEN. It is used by one goroutine at a time,
// except Close, which may be called concurrently with Next to interrupt it.
type Subscription interface {
	// Next blocks until a notification arrives, ctx is done, or the
	// subscription fails. After an error other than ctx's, the subscription
	// is dead: the caller closes it and calls Listen again (and must then
	// re-read statuses, because notifications sent meanwhile are lost).
	Next(ctx context.Context) (Notification, error)

	// Close ends the subscription and releases its connection. It is
	// idempotent, returns in bounded time even while Next is blocked, and
	// makes a blocked Next return.
	Close() error
}

// Notification is a hint that something changed. It is never the truth
// about a job: a Watcher always confirms with FetchStatuses.
type Notification struct {
	// IDs optionally names the jobs that changed. Empty means "something
	// changed, maybe anything". PgQueuer's trigger names no job.
	IDs []JobID
	// Resync says notifications may have been lost (the connection was
	// re-established, or a buffer overflowed): every waited job must be
	// re-read.
	Resync bool
}

// IgnoredCounter is an optional interface of a Subscription that drops
// notifications it does not understand (other event types, garbage). The
// Watcher reports the count in Stats.
type IgnoredCounter interface {
	Ignored() uint64
}

// ErrListenUnsupported is returned (wrapped) by Driver.Listen when the
// backend cannot listen at all.
var ErrListenUnsupported = errors.New("jobwatch: listen not supported by this driver")

// ChangeFeed is an optional interface of a Driver that can tell what
// changed since a point in its history. With it, a notification costs one
// read of the changes, whatever the number of waiters; without it, the
// Watcher re-reads every pending job on each notification.
//
// Changes must be safe for concurrent use, honour ctx, and never miss a
// change: one committed after the read that returned a cursor is in a later
// ChangeSet from that cursor, even if its transaction began (or took its
// ids) earlier than changes already returned. Returning a change twice is
// harmless.
type ChangeFeed interface {
	// Changes returns the current status of every job that changed after
	// cursor, and the cursor to pass next time. A nil cursor starts a feed:
	// it returns no statuses and a cursor for the present. A cursor is
	// opaque: pass back exactly what a previous ChangeSet held.
	Changes(ctx context.Context, cursor Cursor) (ChangeSet, error)
}

// Cursor is an opaque position in a ChangeFeed.
type Cursor any

// ChangeSet is one read of a ChangeFeed.
type ChangeSet struct {
	// Statuses of the jobs that changed, at most once per job.
	Statuses []Status
	// Cursor to pass to the next Changes call.
	Cursor Cursor
	// Partial says changes before Cursor may have been missed: the Watcher
	// re-reads every pending job once, right after this read. A fresh
	// cursor is Partial (it knows nothing of the past). A feed reports
	// Partial only at the reads where it cannot vouch otherwise (for
	// example once, when transactions that were running as the cursor
	// started have all ended, or after it dropped gaps it could not track),
	// so its caller can otherwise rely on it alone.
	Partial bool
	// Skipped counts rows the feed could not use (a status it does not
	// know, say) and moved past; the Watcher reports it in Stats. A bad row
	// never fails a read.
	Skipped int
}
