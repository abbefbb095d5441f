package queue

import (
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/statemachine"
)

// MaxHistory bounds JobInfo.History: a job retried more often than this
// keeps its newest MaxHistory transitions.
const MaxHistory = 1000

// JobInfo is what the queue holds about one job (Queue.Inspect).
type JobInfo struct {
	ID jobwatch.JobID
	// State is the job's current state: the status of its newest log row,
	// as a Watcher reads it (the log, not the queue row, is the truth: the
	// row of an ended job is deleted).
	State statemachine.State
	// Job is the job's queue row, nil once the job has ended (the row is
	// deleted then).
	Job *Job
	// History is the job's log, oldest first: one Transition per log row,
	// at most MaxHistory (the newest).
	History []Transition
	// Truncated says older log rows were left out of History.
	Truncated bool
}

// Traceback returns the traceback recorded with the job's current state:
// for a job that ended as exception, why it failed (PgQueuer also records
// one when it holds or retries a job). It is nil when the newest log row
// has none.
func (i JobInfo) Traceback() *Traceback {
	if len(i.History) == 0 {
		return nil
	}
	return i.History[len(i.History)-1].Traceback
}

// Transition is one log row: the job reached State at At.
type Transition struct {
	State statemachine.State
	// At is the log row's created time.
	At time.Time
	// Entrypoint and Priority are the job's, as the row recorded them.
	Entrypoint string
	Priority   int
	// Traceback is the row's traceback, nil when NULL.
	Traceback *Traceback
}
