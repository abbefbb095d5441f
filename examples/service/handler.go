package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jobwatch/jobwatch"
	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Entrypoint is the job the service enqueues and the worker runs.
const Entrypoint = "thumbnail"

// Service is the HTTP side: it asks for a thumbnail and waits for it. It
// uses only queue.Queue and a Watcher, so its tests run it on the in-memory
// backend and production on backends/pgx or backends/pq, unchanged.
//
// Routes:
//
//	POST /thumbnails?image=NAME[&wait=DURATION]  enqueue (or join) and wait
//	GET  /jobs/ID                                a job's state and history
type Service struct {
	Queue   queue.Queue
	Watcher *jobwatch.Watcher
	// MaxWait bounds the wait of one request (default 10s); a request asks
	// for less with ?wait=.
	MaxWait time.Duration
}

// Reply is the JSON body of every answer.
type Reply struct {
	Job   int64  `json:"job,omitempty"`
	State string `json:"state,omitempty"`
	// Joined says the request found the same thumbnail already asked for
	// (its dedupe key held) and waited on that job.
	Joined bool   `json:"joined,omitempty"`
	Error  string `json:"error,omitempty"`
	// History is the job's transitions (GET /jobs/ID).
	History []Step `json:"history,omitempty"`
}

// Step is one transition of a job.
type Step struct {
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

// Handler returns the service's routes.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /thumbnails", s.thumbnail)
	mux.HandleFunc("GET /jobs/{id}", s.job)
	return mux
}

// thumbnail enqueues a thumbnail of ?image= and waits for it: 200 when it
// is made, 422 with the worker's reason when it failed, 409 when it was
// canceled or deleted, 202 when it is still running after the wait (GET
// /jobs/ID tells later), 400 for bad input.
func (s *Service) thumbnail(w http.ResponseWriter, r *http.Request) {
	image := r.URL.Query().Get("image")
	wait, err := s.waitOf(r)
	if image == "" || err != nil {
		reply(w, http.StatusBadRequest, Reply{Error: "want ?image=NAME and an optional ?wait=DURATION up to " + s.maxWait().String()})
		return
	}
	id, joined, err := s.enqueue(r.Context(), image)
	if err != nil {
		reply(w, http.StatusInternalServerError, Reply{Error: "enqueue: " + err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	state, err := s.Watcher.Wait(ctx, id)
	if err != nil {
		s.stillRunning(w, r.Context(), id, joined, err)
		return
	}
	rep := Reply{Job: int64(id), State: state.String(), Joined: joined}
	switch state {
	case statemachine.Successful:
		reply(w, http.StatusOK, rep)
	case statemachine.Exception:
		rep.Error = s.reason(r.Context(), id)
		reply(w, http.StatusUnprocessableEntity, rep)
	default: // canceled, deleted
		reply(w, http.StatusConflict, rep)
	}
}

// enqueue asks for image's thumbnail. A thumbnail already queued or being
// made holds its dedupe key: the request joins that job.
func (s *Service) enqueue(ctx context.Context, image string) (id jobwatch.JobID, joined bool, err error) {
	ids, err := s.Queue.Enqueue(ctx, queue.NewJob{Entrypoint: Entrypoint, Payload: []byte(image), DedupeKey: "thumbnail:" + image})
	var dup *queue.DuplicateError
	switch {
	case errors.As(err, &dup) && dup.ID > 0:
		return dup.ID, true, nil
	case err != nil:
		return 0, false, err
	}
	return ids[0], false, nil
}

// stillRunning answers a wait that ended before the job did.
func (s *Service) stillRunning(w http.ResponseWriter, ctx context.Context, id jobwatch.JobID, joined bool, waitErr error) {
	if ctx.Err() != nil {
		return // the client went away
	}
	rep := Reply{Job: int64(id), Joined: joined, Error: "still running: see /jobs/" + strconv.FormatInt(int64(id), 10)}
	if !errors.Is(waitErr, context.DeadlineExceeded) {
		reply(w, http.StatusInternalServerError, Reply{Job: int64(id), Error: "wait: " + waitErr.Error()})
		return
	}
	if info, err := s.Queue.Inspect(ctx, id); err == nil {
		rep.State = info.State.String()
	}
	w.Header().Set("Location", "/jobs/"+strconv.FormatInt(int64(id), 10))
	reply(w, http.StatusAccepted, rep)
}

// reason is why a job failed: its traceback's message.
func (s *Service) reason(ctx context.Context, id jobwatch.JobID) string {
	info, err := s.Queue.Inspect(ctx, id)
	switch {
	case err != nil:
		return "reason unknown: " + err.Error()
	case info.Traceback() == nil:
		return "no reason recorded"
	}
	return info.Traceback().ExceptionMessage
}

// job answers GET /jobs/ID: 200 with the state and history, 404 for a job
// the queue does not know, 400 for a bad id.
func (s *Service) job(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || n <= 0 {
		reply(w, http.StatusBadRequest, Reply{Error: "a job id is a positive integer"})
		return
	}
	info, err := s.Queue.Inspect(r.Context(), jobwatch.JobID(n))
	switch {
	case errors.Is(err, queue.ErrUnknownJob):
		reply(w, http.StatusNotFound, Reply{Job: n, Error: "no such job"})
		return
	case err != nil:
		reply(w, http.StatusInternalServerError, Reply{Job: n, Error: err.Error()})
		return
	}
	rep := Reply{Job: n, State: info.State.String()}
	for _, tr := range info.History {
		rep.History = append(rep.History, Step{State: tr.State.String(), At: tr.At})
	}
	if tb := info.Traceback(); tb != nil {
		rep.Error = tb.ExceptionMessage
	}
	reply(w, http.StatusOK, rep)
}

func (s *Service) maxWait() time.Duration {
	if s.MaxWait > 0 {
		return s.MaxWait
	}
	return 10 * time.Second
}

// waitOf reads ?wait=, at most MaxWait (default: MaxWait).
func (s *Service) waitOf(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("wait")
	if v == "" {
		return s.maxWait(), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > s.maxWait() {
		return 0, fmt.Errorf("bad wait %q", v)
	}
	return d, nil
}

func reply(w http.ResponseWriter, code int, r Reply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(r) // the client may be gone
}
