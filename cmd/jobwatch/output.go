package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/jobwatch/jobwatch"
)

// Status words beyond the state machine's.
const (
	statusNotFound = "not_found" // wait: never found
	statusPending  = "pending"   // wait: not settled at the timeout
	statusUnknown  = "unknown"   // status: no such job
)

// lineWriter prints one line per job, `<id> <status>` or, as JSON,
// {"id":<id>,"status":"<status>"}. Each line is flushed at once, so a
// script reading the pipe sees a job as soon as it settles.
type lineWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	json bool
}

func newLineWriter(w io.Writer, asJSON bool) *lineWriter {
	return &lineWriter{w: bufio.NewWriter(w), json: asJSON}
}

func (l *lineWriter) line(id jobwatch.JobID, status string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.json {
		b, _ := json.Marshal(struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		}{int64(id), status})
		l.w.Write(append(b, '\n'))
	} else {
		fmt.Fprintf(l.w, "%d %s\n", id, status)
	}
	return l.w.Flush()
}

// outputError is a failure to write standard output (exit status 1).
type outputError struct{ err error }

func (e *outputError) Error() string { return "writing output: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }
