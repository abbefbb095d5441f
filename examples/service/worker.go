package main

import (
	"context"
	"errors"
	"time"

	"github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// Worker makes thumbnails: it claims "thumbnail" jobs one at a time and
// runs Render on each, heartbeating while it runs, then completes the job
// or records why it failed. Like the Service it only knows queue.Queue.
type Worker struct {
	Queue  queue.Queue
	Render func(ctx context.Context, image string) error
	// Poll is how long Run waits before looking again after finding no
	// work (default 100ms). A production worker would LISTEN instead.
	Poll time.Duration
	// Heartbeat is how often a running job's heartbeat is refreshed
	// (default 10s), so that PgQueuer workers do not re-claim it.
	Heartbeat time.Duration
	// Logf reports what the worker cannot return (nil: nothing).
	Logf func(format string, args ...any)
}

// Run works until ctx ends, then returns nil; it returns a queue error
// other than one caused by ctx ending.
func (w *Worker) Run(ctx context.Context) error {
	poll := w.Poll
	if poll <= 0 {
		poll = 100 * time.Millisecond
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		worked, err := w.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if worked {
			timer.Reset(0)
		} else {
			timer.Reset(poll)
		}
	}
}

// RunOnce claims one job and works it to its end. It reports whether there
// was a job, and returns queue errors (not the job's: those are recorded on
// the job).
func (w *Worker) RunOnce(ctx context.Context) (bool, error) {
	jobs, err := w.Queue.Claim(ctx, queue.ClaimRequest{Entrypoints: []string{Entrypoint}, Limit: 1})
	if err != nil || len(jobs) == 0 {
		return false, err
	}
	job := jobs[0]
	err = w.render(ctx, job)
	switch {
	case errors.Is(err, errGone):
		w.logf("job %d ended while it ran: dropped", job.ID)
		return true, nil
	case err != nil:
		err = w.Queue.Exception(ctx, job.ID, queue.TracebackOf(err))
	default:
		err = w.Queue.Complete(ctx, job.ID)
	}
	if errors.Is(err, statemachine.ErrIllegalTransition) {
		w.logf("job %d ended while it ran: %v", job.ID, err) // canceled meanwhile
		err = nil
	}
	return true, err
}

// errGone: the job ended (was canceled or deleted) while it ran.
var errGone = errors.New("job no longer picked")

// render runs Render for job, refreshing the job's heartbeat meanwhile. If
// a heartbeat finds the job no longer picked, Render's ctx is cancelled and
// render returns errGone.
func (w *Worker) render(ctx context.Context, job queue.Job) error {
	every := w.Heartbeat
	if every <= 0 {
		every = 10 * time.Second
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	beats := make(chan struct{})
	go func() {
		defer close(beats)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			err := w.Queue.Heartbeat(ctx, job.ID)
			if errors.Is(err, queue.ErrNotPicked) {
				cancel(errGone)
				return
			}
			if err != nil && ctx.Err() == nil {
				w.logf("heartbeat of job %d: %v", job.ID, err)
			}
		}
	}()
	err := w.Render(ctx, string(job.Payload))
	close(done)
	<-beats
	if errors.Is(context.Cause(ctx), errGone) {
		return errGone
	}
	return err
}

func (w *Worker) logf(format string, args ...any) {
	if w.Logf != nil {
		w.Logf(format, args...)
	}
}
