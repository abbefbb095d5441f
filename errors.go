package jobwatch

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jobwatch/jobwatch/statemachine"
)

// Sentinel errors, matched with errors.Is.
var (
	// ErrClosed is returned by every call on a Watcher after Close, and by
	// waits that were pending when Close was called.
	ErrClosed = errors.New("jobwatch: watcher closed")
	// ErrNotFound means the job was not known to the database for the whole
	// not-found grace period. The concrete error is a *NotFoundError.
	ErrNotFound = errors.New("jobwatch: job not found")
	// ErrInvalidID is returned for ids <= 0 and for empty id lists.
	ErrInvalidID = errors.New("jobwatch: invalid job id")
	// ErrInvalidOption is returned by New for a nil driver or a bad option.
	ErrInvalidOption = errors.New("jobwatch: invalid option")
	// ErrNotInstalled means the queue's tables or schema do not exist. A
	// driver reports it as a *NotInstalledError; a wait on such a queue
	// ends with it after the not-found grace.
	ErrNotInstalled = errors.New("jobwatch: queue not installed")
)

// NotInstalledError is a driver's report that the queue it reads is not
// installed: the table or schema it looked for does not exist. It matches
// ErrNotInstalled and unwraps to the database's own error.
type NotInstalledError struct {
	Prefix string // object-name prefix looked for ("" for none)
	Schema string // schema looked in ("" for the search_path)
	Err    error  // the database's error (undefined table or schema)
}

func (e *NotInstalledError) Error() string {
	schema := "the search_path"
	if e.Schema != "" {
		schema = fmt.Sprintf("schema %q", e.Schema)
	}
	msg := fmt.Sprintf("jobwatch: queue not installed (prefix %q, %s)", e.Prefix, schema)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Is makes errors.Is(err, ErrNotInstalled) true.
func (e *NotInstalledError) Is(target error) bool { return target == ErrNotInstalled }

// Unwrap returns the database's error.
func (e *NotInstalledError) Unwrap() error { return e.Err }

// WaitError is the error of a wait that ended before its job settled:
// its ctx ended, the Watcher was closed, or the queue is not installed. It
// says what the Watcher last knew of the job and of the database, so a
// caller can tell "still running" from "the database cannot be read".
//
// It matches its Err (ctx.Err(), ErrClosed, ErrNotInstalled) with
// errors.Is. DriverErr is not unwrapped, so that a driver's own timeout
// never passes for the caller's: inspect it with errors.As(we.DriverErr, ...).
type WaitError struct {
	ID JobID
	// LastState is the job's state at the latest successful read that
	// found it (queued, picked, failed), or statemachine.None when no read
	// found it.
	LastState statemachine.State
	// Err is why the wait ended: ctx.Err(), ErrClosed or a
	// *NotInstalledError.
	Err error
	// DriverErr is the latest driver error (a failed status read or
	// listener) when the latest attempt was failing at the time the wait
	// ended; nil when the Watcher was reading the database fine.
	DriverErr error
}

func (e *WaitError) Error() string {
	seen := "never found"
	if e.LastState != statemachine.None {
		seen = "last seen " + e.LastState.String()
	}
	msg := fmt.Sprintf("jobwatch: job %d (%s): %v", int64(e.ID), seen, e.Err)
	if e.DriverErr != nil {
		msg += "; the database could not be read: " + e.DriverErr.Error()
	}
	return msg
}

// Unwrap returns Err.
func (e *WaitError) Unwrap() error { return e.Err }

// NotFoundError lists the jobs that were never found. It matches ErrNotFound.
type NotFoundError struct {
	IDs []JobID
}

func (e *NotFoundError) Error() string {
	const show = 10
	parts := make([]string, 0, min(len(e.IDs), show))
	for _, id := range e.IDs[:min(len(e.IDs), show)] {
		parts = append(parts, fmt.Sprint(int64(id)))
	}
	more := ""
	if len(e.IDs) > show {
		more = fmt.Sprintf(" and %d more", len(e.IDs)-show)
	}
	return fmt.Sprintf("jobwatch: job not found: %s%s", strings.Join(parts, ", "), more)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func invalidID(id JobID) error {
	return fmt.Errorf("%w: %d (ids are positive)", ErrInvalidID, int64(id))
}

func checkIDs(ids []JobID) error {
	if len(ids) == 0 {
		return fmt.Errorf("%w: empty id list", ErrInvalidID)
	}
	for _, id := range ids {
		if id <= 0 {
			return invalidID(id)
		}
	}
	return nil
}

// UnsettledError is the error of WaitAll and WaitAny when they return
// before the jobs settled: one *WaitError for each job that had not, in
// input order. It matches what any of them matches (ctx.Err(), ErrClosed,
// ErrNotInstalled); errors.As finds the first.
type UnsettledError struct {
	Jobs []*WaitError
}

func (e *UnsettledError) Error() string {
	if len(e.Jobs) == 1 {
		return e.Jobs[0].Error()
	}
	const show = 5
	parts := make([]string, 0, min(len(e.Jobs), show))
	for _, j := range e.Jobs[:min(len(e.Jobs), show)] {
		seen := "never found"
		if j.LastState != statemachine.None {
			seen = j.LastState.String()
		}
		parts = append(parts, fmt.Sprintf("%d (%s)", int64(j.ID), seen))
	}
	more := ""
	if len(e.Jobs) > show {
		more = fmt.Sprintf(" and %d more", len(e.Jobs)-show)
	}
	first := e.Jobs[0]
	msg := fmt.Sprintf("jobwatch: %d jobs not settled: %s%s: %v", len(e.Jobs), strings.Join(parts, ", "), more, first.Err)
	if first.DriverErr != nil {
		msg += "; the database could not be read: " + first.DriverErr.Error()
	}
	return msg
}

// Unwrap returns the *WaitError of each job.
func (e *UnsettledError) Unwrap() []error {
	out := make([]error, len(e.Jobs))
	for i, j := range e.Jobs {
		out[i] = j
	}
	return out
}
