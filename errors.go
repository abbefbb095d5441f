package jobwatch

import (
	"errors"
	"fmt"
	"strings"
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
)

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
