package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jobwatch/jobwatch"
	jwqueue "github.com/jobwatch/jobwatch/queue"
	"github.com/jobwatch/jobwatch/statemachine"
)

// inspectTimeout bounds the read of one exception job's traceback.
const inspectTimeout = 10 * time.Second

// waitRun is one `jobwatch wait`: the flags and what it needs of the
// queue besides a Driver.
type waitRun struct {
	f waitFlags
	// inspect reads an exception job's traceback (--json); nil: none.
	inspect func(ctx context.Context, id jobwatch.JobID) (jwqueue.JobInfo, error)
	// checkInstalled returns a dbError matching ErrNotInstalled when the
	// queue is not installed; nil: never checked.
	checkInstalled func(ctx context.Context) error
	// redact masks passwords in what goes to standard error.
	redact func(string) string
}

// waitOutcome is what the jobs came to, for the exit status.
type waitOutcome struct {
	notFound, unsuccessful bool
	unsettled              []*jobwatch.WaitError // at the timeout, in input order
	dbErr                  error                 // a failed traceback read
}

// run waits for ids on d, printing each job as it settles, and returns
// the exit status: 5 database, else 3 timeout, else 4 not found, else 1
// if any job settled other than successful, else 0.
func (r *waitRun) run(ctx context.Context, d jobwatch.Driver, ids []jobwatch.JobID, stdout, stderr io.Writer) (int, error) {
	bar := newProgress(stderr, len(ids), r.f.progress)
	defer bar.done()
	log := barWriter{bar, stderr}
	w, err := jobwatch.New(d, r.f.options(log)...)
	if err != nil {
		return exitUsage, fmt.Errorf("%w: %w", errUsage, err)
	}
	defer w.Close()
	waitCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	if r.f.timeout > 0 {
		var cancel context.CancelFunc
		waitCtx, cancel = context.WithTimeout(waitCtx, r.f.timeout)
		defer cancel()
	}
	h := health{w: w, timing: r.f.health, checkInstalled: r.checkInstalled, stop: stop,
		say: func(msg string) { fmt.Fprintf(log, "jobwatch wait: %s\n", r.redact(msg)) }}
	defer h.start(waitCtx)()

	out := newLineWriter(stdout, r.f.json)
	out.around = bar.around
	o, err := r.collect(ctx, waitCtx, w, ids, out, bar)
	if err != nil {
		return exitFor(err), err
	}
	if cause := context.Cause(waitCtx); errors.Is(cause, jobwatch.ErrNotInstalled) {
		return exitDB, cause
	}
	return r.finish(o, out)
}

// collect prints each job as it settles and gathers the outcome.
func (r *waitRun) collect(ctx, waitCtx context.Context, w *jobwatch.Watcher, ids []jobwatch.JobID, out *lineWriter, bar *progress) (waitOutcome, error) {
	var o waitOutcome
	for st, err := range w.WaitEach(waitCtx, ids) {
		var we *jobwatch.WaitError
		line := jobLine{ID: st.ID, Status: st.State.String()}
		switch {
		case errors.Is(err, jobwatch.ErrNotFound):
			o.notFound, line.Status = true, statusNotFound
		case errors.Is(err, jobwatch.ErrNotInstalled):
			return o, &dbError{err}
		case errors.As(err, &we):
			o.unsettled = append(o.unsettled, we)
			continue
		case err != nil:
			return o, err
		default:
			o.unsuccessful = o.unsuccessful || st.State != statemachine.Successful
			line.Traceback = r.traceback(ctx, st, &o)
		}
		if err := out.job(line); err != nil {
			return o, &outputError{err} // e.g. a closed pipe
		}
		bar.add(1)
	}
	return o, nil
}

// traceback reads the traceback of a job that ended in exception, for
// --json; a failed read is kept in o.dbErr (exit status 5).
func (r *waitRun) traceback(ctx context.Context, st jobwatch.Status, o *waitOutcome) *jwqueue.Traceback {
	if !r.f.json || r.inspect == nil || st.State != statemachine.Exception {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, inspectTimeout)
	defer cancel()
	info, err := r.inspect(ctx, st.ID)
	if err != nil {
		if o.dbErr == nil {
			o.dbErr = &dbError{fmt.Errorf("reading the traceback of job %d: %w", int64(st.ID), err)}
		}
		return nil
	}
	return info.Traceback()
}

// finish prints the unsettled jobs as pending, with their last seen
// state, and returns the exit status.
func (r *waitRun) finish(o waitOutcome, out *lineWriter) (int, error) {
	var readErr error
	for _, we := range o.unsettled {
		last := stateUnseen
		if we.LastState != statemachine.None {
			last = we.LastState.String()
		}
		if err := out.job(jobLine{ID: we.ID, Status: statusPending, LastState: last}); err != nil {
			return exitUnsettled, &outputError{err}
		}
		if we.DriverErr != nil && readErr == nil {
			readErr = we.DriverErr
		}
	}
	timedOut := len(o.unsettled) > 0
	switch {
	case timedOut && errors.Is(o.unsettled[0].Err, context.Canceled):
		return exitInterrupt, o.unsettled[0].Err
	case timedOut && readErr != nil:
		return exitDB, &dbError{fmt.Errorf("timed out after %s, and the database could not be read: %w", r.f.timeout, readErr)}
	case o.dbErr != nil:
		return exitDB, o.dbErr
	case timedOut:
		return exitTimeout, nil
	case o.notFound:
		return exitNotFound, nil
	case o.unsuccessful:
		return exitUnsettled, nil
	}
	return exitOK, nil
}

// barWriter writes to w with the progress bar out of the way.
type barWriter struct {
	bar *progress
	w   io.Writer
}

func (b barWriter) Write(p []byte) (n int, err error) {
	b.bar.around(func() { n, err = b.w.Write(p) })
	return n, err
}
