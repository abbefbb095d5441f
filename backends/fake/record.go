package fake

import (
	"slices"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// record is everything the fake stores about one job, as PostgreSQL stores
// it in two tables: its queue row (job; Status is the current state) and
// its log. A job that ended keeps its record; Inspect then shows no queue
// row, as the row is deleted on PostgreSQL. Records are read and changed
// under Backend.mu only (a commit changes them in place).
type record struct {
	job queue.Job
	log []logRow
}

// logRow is one log row, small: a test may hold a million jobs. The
// entrypoint and priority of a row are the job's, which never change.
type logRow struct {
	at    int64 // UnixNano
	tb    *queue.Traceback
	state statemachine.State
}

// active reports whether r holds its dedupe key: queued or picked, as the
// dedupe index's predicate says.
func (r *record) active() bool {
	return r.job.Status == statemachine.Queued || r.job.Status == statemachine.Picked
}

// ended reports whether r's queue row is gone.
func (r *record) ended() bool { return r.job.Status.Terminal() }

// newRecord is job id as Enqueue writes it at now: queued, logged.
func newRecord(id jobwatch.JobID, j queue.NewJob, now time.Time) *record {
	headers, _ := j.HeadersJSON() // validated already
	var payload []byte
	if len(j.Payload) > 0 {
		payload = slices.Clone(j.Payload)
	}
	r := &record{job: queue.Job{
		ID:           id,
		Priority:     j.Priority,
		Entrypoint:   j.Entrypoint,
		Payload:      payload,
		Headers:      headers,
		Status:       statemachine.Queued,
		DedupeKey:    j.DedupeKey,
		Created:      now,
		Updated:      now,
		Heartbeat:    now,
		ExecuteAfter: now.Add(j.ExecuteAfter.Truncate(time.Microsecond)),
	}, log: make([]logRow, 0, 3)} // queued, picked, and how it ended
	r.logState(now, nil)
	return r
}

// logState appends a log row for r's current state.
func (r *record) logState(now time.Time, tb *queue.Traceback) {
	r.log = append(r.log, logRow{at: now.UnixNano(), tb: tb, state: r.job.Status})
}

// transition moves r to state to on event ev at now, with the column
// changes PostgreSQL's statements make, and logs it.
func (r *record) transition(ev statemachine.Event, to statemachine.State, now time.Time, tb *queue.Traceback) {
	r.job.Status = to
	if !to.Terminal() {
		r.job.Updated = now
		r.job.QueueManagerID = [16]byte{}
		switch ev {
		case statemachine.Claim:
			r.job.Heartbeat = now
		case statemachine.Retry:
			r.job.ExecuteAfter, r.job.Attempts = now, r.job.Attempts+1
		case statemachine.Requeue:
			r.job.ExecuteAfter, r.job.Attempts = now, 0
		}
	}
	r.logState(now, tb)
}

// jobCopy is r's queue row, for a caller to keep.
func (r *record) jobCopy() queue.Job {
	j := r.job
	j.Payload, j.Headers = slices.Clone(j.Payload), slices.Clone(j.Headers)
	return j
}

// info is r as Inspect returns it: copies, so the caller may change them.
func (r *record) info() queue.JobInfo {
	in := queue.JobInfo{ID: r.job.ID, State: r.job.Status}
	if !r.ended() {
		j := r.jobCopy()
		in.Job = &j
	}
	log := r.log
	if len(log) > queue.MaxHistory {
		log, in.Truncated = log[len(log)-queue.MaxHistory:], true
	}
	in.History = make([]queue.Transition, len(log))
	for i, row := range log {
		tr := queue.Transition{State: row.state, At: time.Unix(0, row.at), Entrypoint: r.job.Entrypoint, Priority: r.job.Priority}
		if row.tb != nil {
			tb := *row.tb
			tb.Raw = slices.Clone(tb.Raw)
			tr.Traceback = &tb
		}
		in.History[i] = tr
	}
	return in
}

// now is the fake's clock: the current time at PostgreSQL's precision.
func now() time.Time { return time.Now().Truncate(time.Microsecond) }
