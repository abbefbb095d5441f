package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jobwatch/jobwatch"
	jwqueue "github.com/jobwatch/jobwatch/queue"
)

// Status words beyond the state machine's.
const (
	statusNotFound = "not_found" // wait: never found
	statusPending  = "pending"   // wait: not settled at the timeout
	statusUnknown  = "unknown"   // status: no such job
	stateUnseen    = "unseen"    // wait: pending, and no read ever found the job
)

// historyTime is how the text form prints a transition's time: UTC,
// microseconds (PostgreSQL's precision), fixed width.
const historyTime = "2006-01-02T15:04:05.000000Z07:00"

// jobLine is what the commands print of one job.
type jobLine struct {
	ID     jobwatch.JobID
	Status string
	// LastState is a pending job's last seen state (wait, at the timeout).
	LastState string
	// Traceback is an exception job's traceback (--json).
	Traceback *jwqueue.Traceback
	// History is the job's transitions (status --history), when asked for.
	History []jwqueue.Transition
}

// lineWriter prints one line per job, `<id> <status> [<last state>]` or,
// as JSON, {"id":<id>,"status":"<status>",...}; with history, the text form
// adds one indented `<time> <state>` line per transition. Each job is
// flushed at once, so a script reading the pipe sees a job as soon as it
// settles. around wraps each write (so that the progress bar steps
// aside).
type lineWriter struct {
	mu     sync.Mutex
	w      *bufio.Writer
	json   bool
	around func(func())
}

func newLineWriter(w io.Writer, asJSON bool) *lineWriter {
	return &lineWriter{w: bufio.NewWriter(w), json: asJSON, around: func(f func()) { f() }}
}

func (l *lineWriter) line(id jobwatch.JobID, status string) error {
	return l.job(jobLine{ID: id, Status: status})
}

func (l *lineWriter) job(j jobLine) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	l.around(func() {
		if l.json {
			l.writeJSON(j)
		} else {
			l.writeText(j)
		}
		err = l.w.Flush()
	})
	return err
}

func (l *lineWriter) writeText(j jobLine) {
	fmt.Fprintf(l.w, "%d %s", j.ID, j.Status)
	if j.LastState != "" {
		fmt.Fprintf(l.w, " %s", j.LastState)
	}
	l.w.WriteByte('\n')
	for _, t := range j.History {
		fmt.Fprintf(l.w, "  %s %s\n", t.At.UTC().Format(historyTime), t.State)
	}
}

func (l *lineWriter) writeJSON(j jobLine) {
	v := jsonLine{ID: int64(j.ID), Status: j.Status, LastState: j.LastState, Traceback: newJSONTraceback(j.Traceback)}
	if j.History != nil {
		v.History = make([]jsonTransition, len(j.History))
		for i, t := range j.History {
			v.History[i] = jsonTransition{State: t.State.String(), At: t.At.UTC()}
		}
	}
	b, err := json.Marshal(v)
	if err != nil { // only an additional_context that does not encode
		v.Traceback.AdditionalContext = nil
		b, _ = json.Marshal(v)
	}
	l.w.Write(append(b, '\n'))
}

type jsonLine struct {
	ID        int64            `json:"id"`
	Status    string           `json:"status"`
	LastState string           `json:"last_state,omitempty"`
	Traceback *jsonTraceback   `json:"traceback,omitempty"`
	History   []jsonTransition `json:"history,omitempty"`
}

type jsonTransition struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

// outputError is a failure to write standard output (exit status 1).
type outputError struct{ err error }

func (e *outputError) Error() string { return "writing output: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }
